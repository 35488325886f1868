/**
 * popd's server: listeners (accept paused, never read), connection caps,
 * hand-off to authpop, password checks, workers, reload and shutdown.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import nacl from 'tweetnacl';
import type { AuthRequest, AuthVerdict, NewConnection, VerdictCode } from '@popd/shared/ipc';
import { isRoot } from '@popd/shared/privdrop';
import { loadTables, Tables } from '@popd/shared/tables';
import { Authpop } from './authpop';
import { BcryptPool } from './bcryptpool';
import { checkCertKey } from './checks';
import type { Logs } from './childlog';
import { ConnLimits } from './limits';
import type { Listen, Options } from './options';
import { AUTHPOP, WRKRPOP } from './paths';
import { dummySalt, Verifier } from './verifier';
import { Workers } from './workers';

/** After a failed login, authpop waits this long before answering. */
const FAIL_DELAY_MS = 1_000;
/** bcrypt checks at once (one thread each, at most one per core), and waiting; more get [SYS/TEMP]. */
const MAX_CHECKS = Math.max(1, Math.min(4, os.availableParallelism()));
const MAX_WAITING_CHECKS = 256;
/** Connections over a cap that authpop is still telling so; beyond this they are just closed. */
const MAX_REFUSING = 64;
/** Connections accepted while authpop restarts wait for it, this many at most. */
const MAX_QUEUED = 256;
/** How long a login waits for the user's previous session to end before [IN-USE]. */
const IN_USE_WAIT_MS = 1_000;
/** SIGTERM: how long sessions may take to end before they are ended. */
const GRACE_MS = 10_000;
const KILL_AFTER_MS = 2_000;

const users = (t: Tables): string => `${t.users.size} user${t.users.size === 1 ? '' : 's'}`;
const newId = (): string => Buffer.from(nacl.randomBytes(12)).toString('hex');

export class Server {
  private tables: Tables;
  private salt: string;
  private readonly servers: net.Server[] = [];
  private readonly limits: ConnLimits;
  private readonly refusing = new Set<string>();
  /** Connections whose password check is under way. */
  private readonly asking = new Set<string>();
  /** Connections that have logged in: their login is over. */
  private readonly loggedIn = new Set<string>();
  private readonly queue: Array<{ m: NewConnection; sock: net.Socket }> = [];
  private readonly bcrypt = new BcryptPool(MAX_CHECKS);
  private readonly verifier = new Verifier(MAX_CHECKS, MAX_WAITING_CHECKS, (pass, salt) => this.bcrypt.hash(pass, salt));
  private readonly authpop: Authpop;
  private readonly workers: Workers;
  private stopping = false;

  constructor(
    private readonly o: Options,
    tables: Tables,
    drop: { root: string; uid: number; gid: number } | null,
    private readonly logs: Logs,
  ) {
    this.tables = tables;
    this.salt = dummySalt(tables.auth.values());
    this.limits = new ConnLimits(o.maxConn, o.maxPerAddr);
    const log = logs.log;
    this.authpop = new Authpop(
      AUTHPOP,
      { t: 'config', cert: o.cert, key: o.key, drop, loginTimeoutMs: o.loginTimeoutMs, failDelayMs: FAIL_DELAY_MS, verbosity: o.verbosity },
      {
        ready: () => this.flushQueue(),
        auth: (m) => void this.login(m),
        closed: (id) => {
          this.limits.remove(id);
          this.refusing.delete(id);
          this.loggedIn.delete(id);
        },
        exited: () => {
          // Its sockets died with it: only the connections still waiting for an authpop hold a slot.
          this.limits.clear();
          this.refusing.clear();
          this.asking.clear();
          this.loggedIn.clear();
          for (const { m } of this.queue) this.limits.add(m.id, m.address);
        },
      },
      log,
      logs.child,
    );
    this.workers = new Workers({ script: WRKRPOP, drop: isRoot(), idleTimeoutMs: o.idleTimeoutMs, verbosity: o.verbosity, log, child: logs.child });
  }

  /** Binds every listener (one line per failure), then starts authpop and a spare worker. */
  async start(): Promise<void> {
    for (const l of this.o.listen) this.servers.push(await this.bind(l));
    await this.authpop.start();
    this.workers.warm();
    const where = this.o.listen.map((l) => `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}${l.mode === 'stls' ? ' (STLS)' : ''}`).join(', ');
    this.logs.log.info(`listening on ${where}; ${users(this.tables)}`);
  }

  private bind(l: Listen): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      const srv = net.createServer({ pauseOnConnect: true }, (sock) => this.accept(sock, l.mode));
      srv.once('error', (err: NodeJS.ErrnoException) => {
        const why = err.code === 'EADDRINUSE' ? 'address already in use' : err.code === 'EACCES' ? 'permission denied' : err.code === 'EADDRNOTAVAIL' ? 'address not available' : err.message;
        reject(new Error(`cannot listen on ${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}: ${why}`));
      });
      srv.listen({ host: l.host, port: l.port, ipv6Only: l.host.includes(':'), exclusive: true }, () => {
        srv.removeAllListeners('error');
        srv.on('error', (err) => this.logs.log.err(`listener: ${err.message}`));
        resolve(srv);
      });
    });
  }

  private accept(sock: net.Socket, mode: 'tls' | 'stls'): void {
    sock.on('error', () => sock.destroy());
    const address = sock.remoteAddress;
    const port = sock.remotePort;
    if (this.stopping || address === undefined || port === undefined) {
      sock.destroy();
      return;
    }
    const id = newId();
    const m: NewConnection = { t: 'conn', id, address, port, mode };
    const cap = this.limits.admit(address);
    if (cap !== 'ok') {
      this.logs.log.notice(`${address}: too many connections (${cap === 'total' ? 'server' : 'address'} limit)`);
      if (this.refusing.size >= MAX_REFUSING || !this.authpop.isReady) {
        sock.destroy();
        return;
      }
      this.refusing.add(id);
      this.authpop.send({ ...m, refuse: 'too many connections' }, sock);
      return;
    }
    this.limits.add(id, address);
    if (this.authpop.isReady) {
      if (!this.authpop.send(m, sock)) {
        this.limits.remove(id);
        sock.destroy();
      }
      return;
    }
    if (this.queue.length >= MAX_QUEUED) {
      this.limits.remove(id);
      sock.destroy();
      return;
    }
    this.queue.push({ m, sock });
  }

  private flushQueue(): void {
    for (const { m, sock } of this.queue.splice(0)) {
      if (sock.destroyed || !this.authpop.send(m, sock)) {
        this.limits.remove(m.id);
        sock.destroy();
      }
    }
  }

  private refuse(id: string, code: VerdictCode, text: string): void {
    const v: AuthVerdict = { t: 'verdict', id, ok: false, code, text };
    this.authpop.send(v);
  }

  /**
   * One check at a time per connection, and none after its login: authpop
   * asks so; an authpop that does not (a compromised one flooding checks
   * it never waits for) is killed, and popd starts a new one.
   */
  private async login(m: AuthRequest): Promise<void> {
    if (this.asking.has(m.id) || this.loggedIn.has(m.id)) {
      this.logs.log.err(`authpop asked for a second login on connection ${m.id}; killing it`);
      this.authpop.kill('SIGKILL');
      return;
    }
    this.asking.add(m.id);
    try {
      await this.checkLogin(m);
    } finally {
      this.asking.delete(m.id);
    }
  }

  private async checkLogin(m: AuthRequest): Promise<void> {
    // Only a connection authpop holds may log in; it may be gone after each wait.
    if (!this.limits.has(m.id)) return;
    const tables = this.tables;
    const ok = await this.verifier.check(tables.auth.get(m.user), this.salt, m.pass);
    if (!this.limits.has(m.id)) return;
    if (ok === null) return this.refuse(m.id, 'SYS/TEMP', 'server busy, try again later');
    const info = tables.users.get(m.user);
    if (!ok || info === undefined) return this.refuse(m.id, 'AUTH', 'invalid user name or password');
    if (!isRoot() && info.uid !== process.getuid!()) {
      this.logs.log.warning(`${m.user}: uid ${info.uid} cannot be served in unprivileged mode (running as uid ${process.getuid!()})`);
      return this.refuse(m.id, 'SYS/PERM', 'this server cannot serve this user');
    }
    // A client that logs in again right after QUIT may be a moment ahead of its old worker's exit.
    if (this.workers.inUse(m.user)) {
      await this.workers.waitFree(m.user, IN_USE_WAIT_MS);
      if (!this.limits.has(m.id)) return;
    }
    if (this.stopping) return this.refuse(m.id, 'SYS/TEMP', 'server shutting down');
    if (this.workers.inUse(m.user)) return this.refuse(m.id, 'IN-USE', 'mailbox already in use by another session');
    const w = this.workers.start(info);
    this.loggedIn.add(m.id);
    this.logs.log.debug(`session for ${m.user}: wrkrpop[${w.pid}]`);
    // stdin of a 'pipe' stdio is one end of a socketpair: a net.Socket, typed as a Writable.
    if (!this.authpop.send({ t: 'verdict', id: m.id, ok: true, user: m.user }, w.stdin as net.Socket)) w.kill('SIGTERM');
  }

  /** SIGHUP: new tables only when both load without a problem; the certificate and key likewise (a renewal needs no restart). */
  reload(): void {
    this.reloadTls();
    const t = loadTables(this.o.authtab, this.o.usertab, this.o.subdir);
    if (t.problems.length > 0) {
      for (const p of t.problems) this.logs.log.err(`reload: ${p}`);
      this.logs.log.err('reload failed: keeping the tables loaded before');
      return;
    }
    this.tables = t.value;
    this.salt = dummySalt(t.value.auth.values());
    this.logs.log.info(`reloaded tables: ${users(t.value)}`);
  }

  private reloadTls(): void {
    const problems = checkCertKey(this.o.cert, this.o.key);
    if (problems.length > 0) {
      for (const p of problems) this.logs.log.err(`reload: ${p}`);
      this.logs.log.err('reload failed: keeping the certificate loaded before');
      return;
    }
    // authpop cannot read the files from its chroot: it gets their text. A restarted authpop reads them itself.
    this.authpop.send({ t: 'tls', cert: fs.readFileSync(this.o.cert, 'utf8'), key: fs.readFileSync(this.o.key, 'utf8') });
  }

  /** SIGTERM: no new connections; sessions get GRACE_MS to end; then everything is ended. */
  async shutdown(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.logs.log.info('shutting down');
    for (const s of this.servers) s.close();
    for (const { sock } of this.queue.splice(0)) sock.destroy();
    this.workers.stopSpare();
    this.authpop.shutdown();
    const idle = (): boolean => !this.authpop.running && this.workers.sessions === 0;
    if (!(await waitUntil(idle, GRACE_MS))) {
      this.logs.log.notice(`ending ${this.workers.sessions} sessions still open after ${GRACE_MS / 1000} s`);
      this.authpop.kill('SIGTERM');
      this.workers.signalAll('SIGTERM');
      if (!(await waitUntil(idle, KILL_AFTER_MS))) {
        this.authpop.kill('SIGKILL');
        this.workers.signalAll('SIGKILL');
        await waitUntil(idle, KILL_AFTER_MS);
      }
    }
    await this.bcrypt.close();
    this.logs.log.info('stopped');
  }
}

async function waitUntil(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}
