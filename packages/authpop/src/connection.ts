// identity: _pop3d
/**
 * One client connection in authpop: TLS (implicit, or after STLS), the
 * AUTHORIZATION state with its limits, then a relay to the worker. One
 * phase field says where it is (docs/architecture.md, "authpop"):
 *
 *   handshake -> command <-> verdict -> delay -> command ...
 *                command -> handshake (STLS)      verdict -> relay
 *   any -> closing (last line written) -> closed (socket gone)
 *
 * What to answer is decided by the pure session (step, refusal); this file
 * does the I/O and the timers.
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { hostPort } from '@popd/shared/addr';
import type { AuthVerdict, NewConnection } from '@popd/shared/ipc';
import type { Logger } from '@popd/shared/log';
import { CLOSE_LINGER_MS } from '@popd/shared/params';
import { Pop3Lines } from '@popd/shared/pop3lines';
import { GREETING, newSession, refusal, refusedLine, SessionState, Step, step } from './authorization';
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

type Phase = 'handshake' | 'command' | 'verdict' | 'delay' | 'relay' | 'closing' | 'closed';

export class Connection {
  private sock: net.Socket;
  private phase: Phase = 'command';
  private readonly lines = new Pop3Lines();
  private readonly state: SessionState;
  private readonly where: string;
  /** The client has sent all it will send (half-close): its buffered lines are answered, then the connection closes. */
  private clientEnded = false;
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
    this.where = hostPort(conn.address, conn.port);
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
    this.clearTimer(this.loginTimer);
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

  private clearTimer(t: NodeJS.Timeout): void {
    clearTimeout(t);
    this.timers.delete(t);
  }

  private clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
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
    this.phase = 'handshake';
    const limit = this.timer(this.deps.handshakeTimeoutMs, () => {
      this.deps.log.info(`TLS handshake timeout from ${this.where}`);
      t.destroy();
    });
    t.once('secure', () => {
      this.clearTimer(limit);
      if (this.phase !== 'handshake') return;
      this.phase = 'command';
      this.deps.log.debug(`${this.where}: ${t.getProtocol()} ${t.getCipher()?.name ?? ''}`);
      then();
      this.pump();
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
    // The last line is written: whatever comes now is dropped, not buffered.
    if (this.phase === 'closing' || this.phase === 'closed') return;
    this.lines.push(chunk);
    this.pump();
  };

  private readonly onEnd = (): void => {
    this.clientEnded = true;
    this.pump();
  };

  /** Answers buffered lines while the phase is 'command'. */
  private pump(): void {
    while (this.phase === 'command') {
      // A client that does not read its answers stops being read.
      if (this.sock.writableNeedDrain) {
        this.sock.pause();
        this.sock.once('drain', () => {
          // Waiting for popd keeps the socket paused: resume() does it then.
          if (this.phase !== 'command') return;
          this.sock.resume();
          this.pump();
        });
        return;
      }
      const next = this.lines.next();
      if (next === null) {
        if (this.clientEnded) this.close(null);
        return;
      }
      if (next.t === 'close') this.close(next.text);
      else this.act(next.t === 'line' ? step(this.state, next.line.toString('utf8')) : refusedLine(this.state, next.text));
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
        this.phase = 'verdict';
        this.stopLoginClock();
        this.sock.pause();
        this.deps.askPopd(this.conn.id, s.user, s.pass);
        this.pendingUser = s.user;
        return;
    }
  }

  /** popd's answer; with ok, worker is the descriptor of the worker's end of the session's socket. */
  verdict(v: AuthVerdict, worker: number | null): void {
    const user = this.pendingUser;
    if (this.phase !== 'verdict') {
      if (worker !== null) fs.closeSync(worker);
      return;
    }
    if (v.ok) {
      if (worker === null) {
        this.deps.log.err(`no worker socket for ${user} from ${this.where}`);
        this.close('-ERR [SYS/TEMP] internal error');
        return;
      }
      this.deps.log.info(`login ${user} from ${this.where}`);
      this.startRelay(worker);
      return;
    }
    if (worker !== null) fs.closeSync(worker);
    this.deps.log.notice(`login failed for ${user} from ${this.where}: ${v.code} ${v.text}`);
    const r = refusal(this.state, v.code, v.text);
    if (r.t === 'answer') {
      this.write([r.line]);
      this.resume();
      return;
    }
    this.phase = 'delay';
    // The failure delay is the server's: the client's clock starts again with the answer.
    this.timer(this.deps.failDelayMs, () => {
      if (this.phase !== 'delay') return;
      if (r.close) {
        this.deps.log.notice(`${this.where}: ${this.state.failures} failed logins, closing`);
        this.close(r.line);
        return;
      }
      this.write([r.line]);
      this.resume();
    });
  }

  private resume(): void {
    this.phase = 'command';
    this.runLoginClock();
    this.sock.resume();
    this.pump();
  }

  private startRelay(worker: number): void {
    this.phase = 'relay';
    this.clearTimers();
    this.sock.removeListener('data', this.onData);
    this.sock.removeListener('end', this.onEnd);
    // The worker's first line answers the login; bytes pipelined after it go first.
    relay(this.sock, worker, this.lines.take(), (err) => this.deps.log.debug(`${this.where}: relay: ${err.message}`));
  }

  private timeout(): void {
    if (this.phase === 'relay' || this.phase === 'closing' || this.phase === 'closed') return;
    this.deps.log.info(`login timeout for ${this.where}`);
    if (this.phase === 'handshake') this.sock.destroy();
    else this.close('-ERR [SYS/TEMP] login timeout');
  }

  /**
   * Server shutdown, or popd making room for a new connection (evict): a
   * connection that has not logged in is told why and closed; a relay runs to its end.
   */
  shutdown(why = 'server shutting down'): void {
    if (this.phase === 'relay' || this.phase === 'closing' || this.phase === 'closed') return;
    if (this.phase === 'handshake') this.sock.destroy();
    else this.close(`-ERR [SYS/TEMP] ${why}`);
  }

  private write(lines: string[]): void {
    if (!this.sock.writableEnded && !this.sock.destroyed) this.sock.write(lines.map((l) => l + '\r\n').join(''));
  }

  /** Ends the connection after a last line (none when the client has already gone quiet). */
  private close(last: string | null): void {
    if (last !== null) this.write([last]);
    this.phase = 'closing';
    this.sock.end();
    const s = this.sock;
    setTimeout(() => s.destroy(), CLOSE_LINGER_MS).unref();
  }

  private finish(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.clearTimers();
    this.deps.closed(this.conn.id);
  }
}
