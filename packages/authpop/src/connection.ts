/**
 * One client connection in authpop: TLS (implicit, or after STLS), the
 * AUTHORIZATION state with its limits, then a relay to the worker.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { AuthVerdict, NewConnection } from '@popd/shared/ipc';
import type { Logger } from '@popd/shared/log';
import { LineBuffer } from './lines';
import { AUTH_FAILED, GREETING, MAX_FAILURES, newSession, SessionState, Step, step } from './session';
import { relay } from './relay';

export interface ConnDeps {
  ctx: tls.SecureContext;
  loginTimeoutMs: number;
  failDelayMs: number;
  handshakeTimeoutMs: number;
  log: Logger;
  askPopd(id: string, user: string, pass: string): void;
  /** The client socket is gone: popd may free the slot. */
  closed(id: string): void;
}

/** How long a closing connection may take to flush before it is destroyed. */
const LINGER_MS = 5_000;

export class Connection {
  private sock: net.Socket;
  private readonly lines = new LineBuffer();
  private readonly state: SessionState;
  private readonly where: string;
  /** Waiting for popd's verdict or in a failure delay: no line is read. */
  private busy = false;
  private relaying = false;
  /** Between STLS (or accept) and the end of the TLS handshake. */
  private handshaking = false;
  /** The last line is written; nothing more is read or relayed. */
  private closing = false;
  /** The client has sent all it will send (half-close): answer what is buffered, then close. */
  private eof = false;
  private done = false;
  private pendingUser = '';
  private readonly timers = new Set<NodeJS.Timeout>();
  /** The login timeout counts the client's time only: it stops while popd checks a password. */
  private loginTimer: NodeJS.Timeout | null = null;
  private loginLeftMs: number;
  private loginSince = 0;

  constructor(
    raw: net.Socket,
    private readonly conn: NewConnection,
    private readonly deps: ConnDeps,
  ) {
    this.where = conn.address.includes(':') ? `[${conn.address}]:${conn.port}` : `${conn.address}:${conn.port}`;
    this.state = newSession(conn.mode);
    // A client may send its last commands and half-close at once: it still gets its answers.
    raw.allowHalfOpen = true;
    // Every answer leaves at once: with Nagle's algorithm a small answer after a large one waits for
    // the client's delayed ACK (measured: 17 ms per serial RETR, 58 instead of 1,000 messages/s).
    raw.setNoDelay(true);
    this.sock = raw;
    this.loginLeftMs = deps.loginTimeoutMs;
    this.runLoginClock();
    if (conn.mode === 'tls') this.startTls(raw, () => this.greet());
    else {
      this.attach(raw);
      this.greet();
    }
  }

  private runLoginClock(): void {
    this.loginSince = Date.now();
    this.loginTimer = this.timer(this.loginLeftMs, () => this.timeout());
  }

  private stopLoginClock(): void {
    if (this.loginTimer === null) return;
    clearTimeout(this.loginTimer);
    this.timers.delete(this.loginTimer);
    this.loginTimer = null;
    this.loginLeftMs = Math.max(0, this.loginLeftMs - (Date.now() - this.loginSince));
  }

  private timer(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  private greet(): void {
    if (this.conn.refuse !== undefined) {
      this.deps.log.notice(`refused ${this.where}: ${this.conn.refuse}`);
      this.close(`-ERR [SYS/TEMP] ${this.conn.refuse}`);
      return;
    }
    this.write([GREETING]);
  }

  private startTls(plain: net.Socket, then: () => void): void {
    const t = new tls.TLSSocket(plain, { isServer: true, secureContext: this.deps.ctx });
    this.handshaking = true;
    const limit = this.timer(this.deps.handshakeTimeoutMs, () => {
      this.deps.log.info(`TLS handshake timeout from ${this.where}`);
      t.destroy();
    });
    t.once('secure', () => {
      clearTimeout(limit);
      this.timers.delete(limit);
      this.handshaking = false;
      this.deps.log.debug(`${this.where}: ${t.getProtocol()} ${t.getCipher()?.name ?? ''}`);
      then();
    });
    this.attach(t);
  }

  private attach(sock: net.Socket): void {
    this.sock = sock;
    sock.on('data', this.onData);
    sock.on('end', this.onEnd);
    sock.on('error', (err: Error) => {
      this.deps.log.debug(`${this.where}: ${err.message}`);
      sock.destroy();
    });
    sock.on('close', () => this.finish());
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.closing) return; // the last line is written: whatever comes now is dropped, not buffered
    this.lines.push(chunk);
    this.pump();
  };

  private readonly onEnd = (): void => {
    this.eof = true;
    this.pump();
  };

  private pump(): void {
    while (!this.busy && !this.relaying && !this.closing && !this.done) {
      // A client that does not read its answers stops being read.
      if (this.sock.writableNeedDrain) {
        this.sock.pause();
        this.sock.once('drain', () => {
          // Waiting for popd keeps the socket paused: resume() does it then.
          if (this.busy) return;
          this.sock.resume();
          this.pump();
        });
        return;
      }
      const next = this.lines.next();
      if (next === null) {
        if (this.eof) this.close(null);
        return;
      }
      if ('tooLong' in next) {
        this.close('-ERR line too long');
        return;
      }
      this.act(step(this.state, next.line.toString('utf8')));
    }
  }

  private act(s: Step): void {
    switch (s.t) {
      case 'reply':
        this.write(s.lines);
        return;
      case 'quit':
        this.close('+OK bye');
        return;
      case 'stls': {
        this.write(['+OK begin TLS negotiation']);
        // Whatever the client sent after STLS was sent in the clear: never a command (CVE-2011-0411).
        this.lines.take();
        const plain = this.sock;
        plain.removeAllListeners('data');
        plain.removeAllListeners('end');
        plain.removeAllListeners('close');
        this.startTls(plain, () => undefined);
        return;
      }
      case 'auth':
        this.busy = true;
        this.stopLoginClock();
        this.sock.pause();
        this.deps.askPopd(this.conn.id, s.user, s.pass);
        this.pendingUser = s.user;
        return;
    }
  }

  /** popd's answer; with ok, worker is the worker's end of its socketpair. */
  verdict(v: AuthVerdict, worker: net.Socket | undefined): void {
    const user = this.pendingUser;
    if (this.done || this.closing || !this.busy) {
      worker?.destroy();
      return;
    }
    if (v.ok) {
      if (worker === undefined) {
        this.deps.log.err(`no worker socket for ${user} from ${this.where}`);
        this.close('-ERR [SYS/TEMP] internal error');
        return;
      }
      this.deps.log.info(`login ${user} from ${this.where}`);
      this.startRelay(worker);
      return;
    }
    this.deps.log.notice(`login failed for ${user} from ${this.where}: ${v.code} ${v.text}`);
    const answer = v.code === 'AUTH' ? AUTH_FAILED : `-ERR [${v.code}] ${v.text}`;
    // IN-USE and SYS/PERM come after a right password: answered at once, not counted.
    if (v.code === 'IN-USE' || v.code === 'SYS/PERM') {
      this.write([answer]);
      this.resume();
      return;
    }
    // A busy server's refusal counts and waits like a wrong password: no client retries password checks without pause or end.
    // The failure delay is the server's: the client's clock starts again with the answer.
    this.state.failures++;
    this.timer(this.deps.failDelayMs, () => {
      if (this.done || this.closing) return;
      if (this.state.failures >= MAX_FAILURES) {
        this.deps.log.notice(`${this.where}: ${MAX_FAILURES} failed logins, closing`);
        this.close(answer);
        return;
      }
      this.write([answer]);
      this.resume();
    });
  }

  private resume(): void {
    this.busy = false;
    this.runLoginClock();
    this.sock.resume();
    this.pump();
  }

  private startRelay(worker: net.Socket): void {
    this.relaying = true;
    this.busy = false;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.sock.removeListener('data', this.onData);
    this.sock.removeListener('end', this.onEnd);
    // The worker's first line answers the login; bytes pipelined after it go first.
    relay(this.sock, worker, this.lines.take(), (err) => this.deps.log.debug(`${this.where}: relay: ${err.message}`));
  }

  private timeout(): void {
    if (this.relaying || this.done) return;
    this.deps.log.info(`login timeout for ${this.where}`);
    if (this.handshaking) this.sock.destroy();
    else this.close('-ERR [SYS/TEMP] login timeout');
  }

  /**
   * Server shutdown, or popd making room for a new connection (evict): a
   * connection that has not logged in is told why and closed; a relay runs to its end.
   */
  shutdown(why = 'server shutting down'): void {
    if (this.relaying || this.done || this.closing) return;
    if (this.handshaking) this.sock.destroy();
    else this.close(`-ERR [SYS/TEMP] ${why}`);
  }

  private write(lines: string[]): void {
    if (!this.sock.writableEnded && !this.sock.destroyed) this.sock.write(lines.map((l) => l + '\r\n').join(''));
  }

  /** Ends the connection after a last line (none when the client has already gone quiet). */
  private close(last: string | null): void {
    if (last !== null) this.write([last]);
    this.closing = true;
    this.sock.end();
    const s = this.sock;
    setTimeout(() => s.destroy(), LINGER_MS).unref();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.deps.closed(this.conn.id);
  }
}
