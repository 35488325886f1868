/**
 * authpop's supervisor: starts it, sends its configuration, validates what
 * it says (it faces the network: every message is treated as hostile), and
 * restarts it with backoff when it dies.
 */
import { ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { AuthpopConfig, AuthRequest, parseFromAuthpop, PopdToAuthpop } from '@popd/shared/ipc';
import type { Logger } from '@popd/shared/log';
import type { ChildSink } from './childlog';
import { childLines, onChildMessage } from './childio';

export interface AuthpopEvents {
  ready(): void;
  auth(m: AuthRequest): void;
  closed(id: string): void;
  /** Every connection it held is gone. */
  exited(): void;
}

const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 30_000;
/** A run this long resets the backoff. */
const STABLE_MS = 60_000;

export class Authpop {
  private child: ChildProcess | null = null;
  private ready = false;
  private stopping = false;
  private backoffMs = MIN_BACKOFF_MS;
  private restartTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly script: string,
    private readonly config: AuthpopConfig,
    private readonly ev: AuthpopEvents,
    private readonly log: Logger,
    private readonly childLog: ChildSink,
  ) {}

  get isReady(): boolean {
    return this.ready && this.child !== null && this.child.connected;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== null;
  }

  /** Starts authpop; resolves when it is ready, rejects when it exits first. */
  start(): Promise<void> {
    const c = spawn(process.execPath, [this.script], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    const pid = c.pid ?? 0;
    const startedAt = Date.now();
    this.child = c;
    this.ready = false;
    childLines(c.stderr!, (line) => this.childLog('authpop', pid, 'err', line));
    const started = new Promise<void>((resolve, reject) => {
      onChildMessage(c, () => this.log.err(`authpop[${pid}] sent a handle; killing it`), (raw) => {
        const m = parseFromAuthpop(raw);
        if (m === null) {
          this.log.err(`authpop[${pid}] sent a malformed message; killing it`);
          c.kill('SIGKILL');
          return;
        }
        switch (m.t) {
          case 'ready':
            if (this.ready) return;
            this.ready = true;
            resolve();
            this.ev.ready();
            return;
          case 'auth':
            if (this.ready) this.ev.auth(m);
            return;
          case 'closed':
            this.ev.closed(m.id);
            return;
          case 'log':
            this.childLog('authpop', pid, m.level, m.msg);
            return;
        }
      });
      c.on('error', (err) => this.log.err(`cannot start authpop: ${err.message}`));
      c.on('exit', (code, signal) => {
        const wasReady = this.ready;
        this.child = null;
        this.ready = false;
        this.ev.exited();
        if (!wasReady) reject(new Error(`authpop exited during start-up (${signal ?? `status ${code}`})`));
        if (this.stopping) return;
        if (Date.now() - startedAt > STABLE_MS) this.backoffMs = MIN_BACKOFF_MS;
        this.log.err(`authpop[${pid}] exited with ${signal ?? `status ${code}`}; restarting in ${this.backoffMs} ms`);
        this.restartTimer = setTimeout(() => {
          this.restartTimer = null;
          this.start().catch((err: Error) => this.log.err(err.message));
        }, this.backoffMs);
        this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
      });
    });
    c.send(this.config);
    return started;
  }

  /** Sends a message, with a socket beside it; false when authpop cannot take it now. */
  send(m: PopdToAuthpop, handle?: net.Socket): boolean {
    const c = this.child;
    if (c === null || !this.isReady) return false;
    const done = (err: Error | null): void => {
      if (err) {
        this.log.warning(`cannot pass ${m.t} to authpop: ${err.message}`);
        handle?.destroy();
      }
    };
    if (handle) c.send(m, handle, done);
    else c.send(m, done);
    return true;
  }

  /** Tells authpop to finish its connections; no restart after it exits. */
  shutdown(): void {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.send({ t: 'shutdown' });
  }

  kill(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }
}
