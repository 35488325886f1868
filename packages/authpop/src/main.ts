// identity: root until its config, then _pop3d
/**
 * authpop: the network-facing process (docs/architecture.md, "authpop").
 * popd starts it as root; every module is loaded here, before popd's first
 * message, by static imports; configure() (configure.ts) is the root phase,
 * and from its return on this process is _pop3d in an empty chroot, serving
 * the sockets popd passes: TLS, the AUTHORIZATION state, and the relay to a
 * worker after login.
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { hostPort } from '@popd/shared/addr';
import { AuthpopConfig, AuthpopToPopd, PopdToAuthpop, PROTOCOL } from '@popd/shared/ipc';
import { FAIL_DELAY_MS, HANDSHAKE_TIMEOUT_MS } from '@popd/shared/params';
import { tls13Context } from '@popd/shared/tls13';
import { ToPopd } from '@popd/shared/topopd';
import { configure } from './configure';
import { Connection } from './connection';

const popd = new ToPopd('authpop');
const log = popd.log;
const conns = new Map<string, Connection>();
let ctx: tls.SecureContext | null = null;
let config: AuthpopConfig | null = null;
let shuttingDown = false;

function send(m: AuthpopToPopd): void {
  popd.send(m);
}

/** A passed client descriptor as a socket (Connection allows it to half-close). */
function socketOf(fd: number): net.Socket {
  return new net.Socket({ fd, readable: true, writable: true });
}


function start(c: AuthpopConfig): void {
  try {
    ctx = configure(c);
  } catch (err) {
    log.err(`cannot start: ${(err as Error).message}`);
    process.exit(1);
  }
  config = c;
  log.verbosity = c.verbosity;
  send({ t: 'ready', v: PROTOCOL });
}

function exitWhenIdle(): void {
  if (shuttingDown && conns.size === 0) process.exit(0);
}

function onMessage(m: PopdToAuthpop, fd: number | null): void {
  if (fd !== null && m.t !== 'conn' && m.t !== 'verdict') {
    fs.closeSync(fd);
    fd = null;
  }
  switch (m.t) {
    case 'config':
      if (config === null) start(m);
      return;
    case 'conn': {
      if (fd === null) return;
      const sock = socketOf(fd);
      if (ctx === null || config === null || shuttingDown || conns.has(m.id)) {
        sock.destroy();
        return;
      }
      log.info(`connection from ${hostPort(m.address, m.port)}${m.mode === 'stls' ? ' (STLS)' : ''}`);
      const c = new Connection(sock, m, {
        ctx,
        loginTimeoutMs: config.loginTimeoutMs,
        failDelayMs: FAIL_DELAY_MS,
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
      // The session's socket becomes a socket in the relay, which reads it its own way.
      if (c) c.verdict(m, fd);
      else if (fd !== null) fs.closeSync(fd);
      return;
    }
    case 'evict':
      conns.get(m.id)?.shutdown('connection closed to make room');
      return;
    case 'tls':
      // Connections from now on use it; those under way keep theirs.
      try {
        ctx = tls13Context(m.cert, m.key);
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

// popd is trusted: its messages are the shapes of ipc.ts.
popd.onMessage((m, fd) => onMessage(m as unknown as PopdToAuthpop, fd));
// Without popd there is nobody to verify logins or to log to.
popd.onClose(() => process.exit(0));
