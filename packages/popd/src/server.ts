// identity: root
/**
 * Root code: popd's server (docs/architecture.md, "popd"): listeners
 * (accept paused, never read), connection caps, hand-off to an authpop,
 * password checks, sessions on workers, reload and shutdown.
 */
import fs from 'node:fs';
import net from 'node:net';
import nacl from 'tweetnacl';
import { hostPort } from '@popd/shared/addr';
import { AuthRequest, AuthVerdict, NewConnection, PROTOCOL, VerdictCode } from '@popd/shared/ipc';
import {
  GRACE_MS,
  IN_USE_WAIT_MS,
  KILL_AFTER_MS,
  LOGIN_KNOWN,
  LOGIN_KNOWN_BURST,
  LOGIN_KNOWN_MS,
  LOGIN_KNOWN_PER_S,
  LOGIN_KNOWN_PER_USER,
  LOGIN_MARK_MS,
  LOGIN_MARKS,
  LOGIN_NET_BURST,
  LOGIN_NET_PER_S,
  LOGIN_TRACKED,
  LOGIN_USER_BURST,
  LOGIN_USER_PER_S,
  LOGIN_WAIT_MAX_MS,
  MAX_CHECKS,
  MAX_QUEUED,
  MAX_REFUSING,
  maxWaitingChecks,
  STOP_POLL_MS,
} from '@popd/shared/params';
import { isRoot } from '@popd/shared/privdrop';
import { loadTables, Tables } from '@popd/shared/tables';
import { addressPrefix } from './address-prefix';
import { AuthpopSlot, AuthpopSupervisor } from './authpop-supervisor';
import { BcryptPool } from './bcryptpool';
import { checkCertKey } from './checks';
import type { Logs } from './logs';
import { ConnectionCaps } from './connection-caps';
import { LoginBudget } from './login-budget';
import type { Listen, Options } from './options';
import { AUTHPOP, WRKRPOP } from './paths';
import { dummySalt, Verifier } from './verifier';
import { WrkrpopSupervisor } from './wrkrpop-supervisor';

const users = (t: Tables): string => `${t.users.size} user${t.users.size === 1 ? '' : 's'}`;
const newId = (): string => Buffer.from(nacl.randomBytes(12)).toString('hex');

/**
 * The descriptor of an accepted socket, to pass to authpop. Node keeps it
 * in an internal field (its own IPC reads it there to pass a socket); it
 * has no public accessor.
 */
const fdOf = (sock: net.Socket): number => (sock as unknown as { _handle: { fd: number } })._handle.fd;

export class Server {
  private tables: Tables;
  private salt: string;
  private readonly servers: net.Server[] = [];
  private readonly caps: ConnectionCaps;
  /** Connections on their way out, refused or evicted: no longer counted by the caps, at most MAX_REFUSING. */
  private readonly refusing = new Set<string>();
  /** Connections whose password check is under way. */
  private readonly asking = new Set<string>();
  /** Connections that have logged in: their login is over. */
  private readonly loggedIn = new Set<string>();
  private readonly queue: Array<{ m: NewConnection; sock: net.Socket }> = [];
  private readonly bcrypt = new BcryptPool(MAX_CHECKS);
  private readonly verifier: Verifier;
  private readonly budget: LoginBudget;
  private readonly authpops: AuthpopSupervisor;
  private readonly workers: WrkrpopSupervisor;
  private stopping = false;

  constructor(
    private readonly o: Options,
    tables: Tables,
    drop: { root: string; uid: number; gid: number } | null,
    private readonly logs: Logs,
  ) {
    this.tables = tables;
    this.salt = dummySalt(tables.auth.values());
    this.caps = new ConnectionCaps(o.maxConn, o.maxPerAddr);
    this.verifier = new Verifier(MAX_CHECKS, maxWaitingChecks(o.maxConn), (pass, salt) => this.bcrypt.hash(pass, salt));
    const log = logs.log;
    this.budget = new LoginBudget(
      {
        userBurst: LOGIN_USER_BURST,
        userPerS: LOGIN_USER_PER_S,
        netBurst: LOGIN_NET_BURST,
        netPerS: LOGIN_NET_PER_S,
        maxWaitMs: LOGIN_WAIT_MAX_MS,
        markMs: LOGIN_MARK_MS,
        marks: LOGIN_MARKS,
        tracked: LOGIN_TRACKED,
        knownBurst: LOGIN_KNOWN_BURST,
        knownPerS: LOGIN_KNOWN_PER_S,
        knownMs: LOGIN_KNOWN_MS,
        knownPerUser: LOGIN_KNOWN_PER_USER,
        known: LOGIN_KNOWN,
      },
      () => performance.now(),
      (kind, key) =>
        log.notice(
          kind === 'user'
            ? `login budget: more than ${LOGIN_USER_BURST} failed logins for user ${key}: checking ${LOGIN_USER_PER_S}/s, refusing networks that tried it`
            : `login budget: more than ${LOGIN_NET_BURST} failed logins from ${key}: checking ${LOGIN_NET_PER_S}/s, refusing the rest`,
        ),
    );
    const forget = (id: string): void => {
      this.caps.remove(id);
      this.refusing.delete(id);
      this.loggedIn.delete(id);
      this.asking.delete(id);
    };
    this.authpops = new AuthpopSupervisor(
      o.authpops,
      AUTHPOP,
      { t: 'config', v: PROTOCOL, cert: o.cert, key: o.key, drop, loginTimeoutMs: o.loginTimeoutMs, verbosity: o.verbosity },
      {
        ready: () => this.flushQueue(),
        auth: (m, from) => void this.login(m, from),
        closed: forget,
        lost: (ids) => {
          for (const id of ids) forget(id);
        },
      },
      log,
      logs.child,
    );
    this.workers = new WrkrpopSupervisor({
      script: WRKRPOP,
      isolation: o.isolation,
      drop: isRoot(),
      idleTimeoutMs: o.idleTimeoutMs,
      workerIdleMs: o.workerIdleMs,
      verbosity: o.verbosity,
      log,
      sink: logs.child,
    });
    this.workers.setTables(tables);
  }

  /** Binds every listener (one line per failure), then starts the authpops and the spare workers. */
  async start(): Promise<void> {
    for (const l of this.o.listen) this.servers.push(await this.bind(l));
    await this.bcrypt.ready;
    await this.authpops.start();
    this.workers.warm();
    const where = this.o.listen.map((l) => `${hostPort(l.host, l.port)}${l.mode === 'stls' ? ' (STLS)' : ''}`).join(', ');
    this.logs.log.info(`listening on ${where}; ${users(this.tables)}; ${this.o.authpops} authpop, workers per ${this.o.isolation}`);
  }

  private bind(l: Listen): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      const srv = net.createServer({ pauseOnConnect: true }, (sock) => this.accept(sock, l.mode));
      srv.once('error', (err: NodeJS.ErrnoException) => {
        const why = err.code === 'EADDRINUSE' ? 'address already in use' : err.code === 'EACCES' ? 'permission denied' : err.code === 'EADDRNOTAVAIL' ? 'address not available' : err.message;
        reject(new Error(`cannot listen on ${hostPort(l.host, l.port)}: ${why}`));
      });
      srv.listen({ host: l.host, port: l.port, ipv6Only: l.host.includes(':'), exclusive: true }, () => {
        srv.removeAllListeners('error');
        srv.on('error', (err) => this.logs.log.err(`listener: ${err.message}`));
        resolve(srv);
      });
    });
  }

  /** Hands the socket to an authpop (it gets a copy of the descriptor) and closes popd's. */
  private handOver(a: AuthpopSlot, m: NewConnection, sock: net.Socket): boolean {
    const ok = !sock.destroyed && a.send(m, fdOf(sock));
    if (ok) a.conns.add(m.id);
    sock.destroy();
    return ok;
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
    const a = this.authpops.pick();
    const network = addressPrefix(address);
    const cap = this.caps.admit(network);
    if (cap !== 'ok' && !this.evict(network, cap, address)) {
      this.logs.log.notice(`${address}: too many connections (${cap === 'total' ? 'server' : 'address'} limit), all logged in or logging in`);
      if (this.refusing.size >= MAX_REFUSING || a === null) {
        sock.destroy();
        return;
      }
      this.refusing.add(id);
      if (!this.handOver(a, { ...m, refuse: 'too many connections' }, sock)) this.refusing.delete(id);
      return;
    }
    this.caps.add(id, network);
    if (a !== null) {
      if (!this.handOver(a, m, sock)) this.caps.remove(id);
      return;
    }
    if (this.queue.length >= MAX_QUEUED) {
      this.caps.remove(id);
      sock.destroy();
      return;
    }
    this.queue.push({ m, sock });
  }

  /**
   * A cap is reached: the oldest connection (of network for -M, of anyone for -m)
   * that is neither logged in nor having its password checked is closed to
   * make room, and its slot is the new one's at once (the evicted socket
   * counts among those on their way out, so the cap on live connections holds).
   * false when there is none: then the new connection is refused.
   */
  private evict(network: string, cap: 'total' | 'network', address: string): boolean {
    if (this.refusing.size >= MAX_REFUSING) return false;
    const mayGo = (id: string): boolean => !this.loggedIn.has(id) && !this.asking.has(id) && this.authpops.holder(id) !== null;
    const id = this.caps.oldest(cap === 'network' ? network : null, mayGo);
    if (id === null || !this.authpops.holder(id)!.send({ t: 'evict', id })) return false;
    this.logs.log.notice(`${address}: too many connections (${cap === 'total' ? 'server' : 'address'} limit), closing the oldest one not logged in (from ${this.caps.netOf(id)})`);
    this.caps.remove(id);
    this.refusing.add(id);
    return true;
  }

  private flushQueue(): void {
    while (this.queue.length > 0) {
      const a = this.authpops.pick();
      if (a === null) return;
      const { m, sock } = this.queue.shift()!;
      if (!this.handOver(a, m, sock)) this.caps.remove(m.id);
    }
  }

  private refuse(a: AuthpopSlot, id: string, code: VerdictCode, text: string): void {
    const v: AuthVerdict = { t: 'verdict', id, ok: false, code, text };
    a.send(v);
  }

  /**
   * One check at a time per connection, and none after its login: authpop
   * asks so; an authpop that does not (a compromised one flooding checks
   * it never waits for) is killed, and popd starts a new one.
   */
  private async login(m: AuthRequest, a: AuthpopSlot): Promise<void> {
    // An evicted connection is being closed: its request (sent before authpop heard) gets no answer.
    if (this.refusing.has(m.id)) return;
    if (this.asking.has(m.id) || this.loggedIn.has(m.id)) {
      this.logs.log.err(`authpop[${a.pid}] asked for a second login on connection ${m.id}; killing it`);
      a.kill('SIGKILL');
      return;
    }
    this.asking.add(m.id);
    try {
      await this.checkLogin(m, a);
    } finally {
      this.asking.delete(m.id);
    }
  }

  private async checkLogin(m: AuthRequest, a: AuthpopSlot): Promise<void> {
    // Only a connection this authpop holds may log in; it may be gone after each wait.
    const held = (): boolean => a.conns.has(m.id);
    const network = this.caps.netOf(m.id);
    // Every request gets a verdict: authpop's login clock stands still until it does.
    if (network === undefined) return this.refuse(a, m.id, 'SYS/TEMP', 'internal error');
    // The same for a user name that does not exist: the answer tells nothing about who does.
    const gate = this.budget.admit(m.user, network);
    if (gate.t === 'refuse') return this.refuse(a, m.id, 'SYS/TEMP', 'too many login attempts, try again later');
    if (gate.waitMs > 0) {
      await new Promise((r) => setTimeout(r, gate.waitMs));
      if (!held()) return this.budget.settle(gate.ticket, 'unchecked');
    }
    const tables = this.tables;
    const ok = await this.verifier.check(tables.auth.get(m.user), this.salt, m.pass);
    this.budget.settle(gate.ticket, ok === null ? 'unchecked' : ok ? 'ok' : 'failed');
    if (!held()) return;
    if (ok === null) return this.refuse(a, m.id, 'SYS/TEMP', 'server busy, try again later');
    const info = tables.users.get(m.user);
    if (!ok || info === undefined) return this.refuse(a, m.id, 'AUTH', 'invalid user name or password');
    if (!isRoot() && info.uid !== process.getuid!()) {
      this.logs.log.warning(`${m.user}: uid ${info.uid} cannot be served in unprivileged mode (running as uid ${process.getuid!()})`);
      return this.refuse(a, m.id, 'SYS/PERM', 'this server cannot serve this user');
    }
    // A client that logs in again right after QUIT may be a moment ahead of its old session's end.
    if (this.workers.inUse(m.user)) {
      await this.workers.waitFree(m.user, IN_USE_WAIT_MS);
      if (!held()) return;
    }
    if (this.stopping) return this.refuse(a, m.id, 'SYS/TEMP', 'server shutting down');
    if (this.workers.inUse(m.user)) return this.refuse(a, m.id, 'IN-USE', 'mailbox already in use by another session');
    const fd = this.workers.startSession(info);
    if (fd === null) return this.refuse(a, m.id, 'SYS/TEMP', 'mailbox unavailable, try again later');
    this.loggedIn.add(m.id);
    a.send({ t: 'verdict', id: m.id, ok: true, user: m.user }, fd);
    // The worker sees the session end when authpop's copy closes (or never arrives).
    fs.closeSync(fd);
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
    this.workers.setTables(t.value);
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
    this.authpops.broadcast({ t: 'tls', cert: fs.readFileSync(this.o.cert, 'utf8'), key: fs.readFileSync(this.o.key, 'utf8') });
  }

  /** SIGTERM: no new connections; sessions get GRACE_MS to end; then everything is ended. */
  async shutdown(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.logs.log.info('shutting down');
    for (const s of this.servers) s.close();
    for (const { sock } of this.queue.splice(0)) sock.destroy();
    this.workers.stop();
    this.authpops.shutdown();
    const idle = (): boolean => !this.authpops.running && this.workers.sessions === 0;
    if (!(await waitUntil(idle, GRACE_MS))) {
      this.logs.log.notice(`ending ${this.workers.sessions} sessions still open after ${GRACE_MS / 1000} s`);
      this.authpops.kill('SIGTERM');
      this.workers.signalAll('SIGTERM');
      if (!(await waitUntil(idle, KILL_AFTER_MS))) {
        this.authpops.kill('SIGKILL');
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
    await new Promise((r) => setTimeout(r, STOP_POLL_MS));
  }
  return true;
}
