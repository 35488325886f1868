/**
 * authpop: the network-facing process. popd starts it as root and sends its
 * configuration; it reads the certificate and key, chroots to an empty
 * directory and drops to the unprivileged user (every module is loaded by
 * then: all imports are static), and then serves the sockets popd passes:
 * TLS, the AUTHORIZATION state, and the relay to a worker after login.
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { AuthpopConfig, AuthpopToPopd, PopdToAuthpop } from '@popd/shared/ipc';
import { ipcSink, Logger, stderrSink } from '@popd/shared/log';
import { dropPrivileges } from '@popd/shared/privdrop';
import { Connection } from './connection';

const HANDSHAKE_TIMEOUT_MS = 30_000;

const log = new Logger(ipcSink(stderrSink('authpop')));
const conns = new Map<string, Connection>();
let ctx: tls.SecureContext | null = null;
let config: AuthpopConfig | null = null;
let shuttingDown = false;

function send(m: AuthpopToPopd): void {
  if (process.connected) process.send!(m);
}

const secureContext = (cert: Buffer | string, key: Buffer | string): tls.SecureContext => tls.createSecureContext({ cert, key, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });

function configure(c: AuthpopConfig): void {
  try {
    ctx = secureContext(fs.readFileSync(c.cert), fs.readFileSync(c.key));
    if (c.drop !== null) dropPrivileges(c.drop);
  } catch (err) {
    log.err(`cannot start: ${(err as Error).message}`);
    process.exit(1);
  }
  config = c;
  log.verbosity = c.verbosity;
  send({ t: 'ready' });
}

function exitWhenIdle(): void {
  if (shuttingDown && conns.size === 0) process.exit(0);
}

function onMessage(m: PopdToAuthpop, handle: unknown): void {
  const sock = handle instanceof net.Socket ? handle : undefined;
  switch (m.t) {
    case 'config':
      if (config === null) configure(m);
      return;
    case 'conn': {
      if (sock === undefined) return;
      if (ctx === null || config === null || shuttingDown || conns.has(m.id)) {
        sock.destroy();
        return;
      }
      log.info(`connection from ${m.address}:${m.port}${m.mode === 'stls' ? ' (STLS)' : ''}`);
      const c = new Connection(sock, m, {
        ctx,
        loginTimeoutMs: config.loginTimeoutMs,
        failDelayMs: config.failDelayMs,
        handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
        log,
        askPopd: (id, user, pass) => send({ t: 'auth', id, user, pass }),
        closed: (id) => {
          conns.delete(id);
          send({ t: 'closed', id });
          exitWhenIdle();
        },
      });
      conns.set(m.id, c);
      return;
    }
    case 'verdict': {
      const c = conns.get(m.id);
      if (c) c.verdict(m, sock);
      else sock?.destroy();
      return;
    }
    case 'tls':
      // Connections from now on use it; those under way keep theirs.
      try {
        ctx = secureContext(m.cert, m.key);
        log.info('certificate reloaded');
      } catch (err) {
        log.err(`certificate not reloaded: ${(err as Error).message}`);
      }
      return;
    case 'shutdown':
      shuttingDown = true;
      for (const c of conns.values()) c.shutdown();
      exitWhenIdle();
      return;
  }
}

process.on('message', (m, handle) => onMessage(m as PopdToAuthpop, handle));
// Without popd there is nobody to verify logins or to log to.
process.on('disconnect', () => process.exit(0));
