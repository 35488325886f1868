// identity: root
/**
 * Root code: popd's authpop processes (docs/architecture.md, "authpop").
 * -A of them, each started with its configuration, restarted with backoff
 * when it dies; new connections go to the ready one holding the fewest.
 * A dead authpop ends only the connections it held.
 */
import type { AuthpopConfig, AuthpopToPopd, AuthRequest, PopdToAuthpop } from '@popd/shared/ipc';
import { parseFromAuthpop } from '@popd/shared/ipc';
import type { Logger } from '@popd/shared/log';
import { MAX_BACKOFF_MS, MIN_BACKOFF_MS, STABLE_MS } from '@popd/shared/params';
import { Child } from './child';
import type { ChildSink } from './logs';

export interface AuthpopEvents {
  /** An authpop became ready (connections waiting for one can go). */
  ready(): void;
  auth(m: AuthRequest, from: AuthpopSlot): void;
  closed(id: string): void;
  /** These connections died with their authpop. */
  lost(ids: Iterable<string>): void;
}

/** One authpop: its current process, restarted in place. */
export class AuthpopSlot {
  private child: Child<AuthpopToPopd> | null = null;
  private backoffMs = MIN_BACKOFF_MS;
  private restartTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  /** Connections this authpop holds: popd's ids. */
  readonly conns = new Set<string>();

  constructor(
    private readonly script: string,
    private readonly config: AuthpopConfig,
    private readonly ev: AuthpopEvents,
    private readonly log: Logger,
    private readonly sink: ChildSink,
  ) {}

  get isReady(): boolean {
    return this.child !== null && this.child.ready;
  }

  get running(): boolean {
    return this.child !== null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the process; resolves when it is ready, rejects when it exits first. */
  start(): Promise<void> {
    const startedAt = Date.now();
    return new Promise<void>((resolve, reject) => {
      const c = new Child<AuthpopToPopd>(
        'authpop',
        this.script,
        [],
        parseFromAuthpop,
        {
          message: (m) => {
            switch (m.t) {
              case 'ready':
                resolve();
                this.ev.ready();
                return;
              case 'auth':
                // Only a connection popd gave this authpop may log in.
                if (this.conns.has(m.id)) this.ev.auth(m, this);
                return;
              case 'closed':
                if (this.conns.delete(m.id)) this.ev.closed(m.id);
                return;
            }
          },
          exit: (code, signal) => {
            this.child = null;
            const lost = [...this.conns];
            this.conns.clear();
            this.ev.lost(lost);
            // After a resolve this does nothing; a start-up failure at popd's start ends popd.
            reject(new Error(`authpop exited during start-up (${signal ?? `status ${code}`})`));
            if (this.stopping) return;
            if (Date.now() - startedAt > STABLE_MS) this.backoffMs = MIN_BACKOFF_MS;
            this.log.err(`authpop[${c.pid}] exited with ${signal ?? `status ${code}`}; restarting in ${this.backoffMs} ms`);
            this.restartTimer = setTimeout(() => {
              this.restartTimer = null;
              this.start().catch((err: Error) => this.log.err(err.message));
            }, this.backoffMs);
            this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
          },
        },
        this.log,
        this.sink,
      );
      this.child = c;
      c.send(this.config);
    });
  }

  /** Sends a message, with a descriptor that stays popd's to close; false when this authpop cannot take it. */
  send(m: PopdToAuthpop, fd?: number): boolean {
    return this.child !== null && this.isReady && this.child.send(m, fd);
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

export class AuthpopSupervisor {
  readonly slots: AuthpopSlot[];

  constructor(count: number, script: string, config: AuthpopConfig, ev: AuthpopEvents, log: Logger, sink: ChildSink) {
    this.slots = Array.from({ length: count }, () => new AuthpopSlot(script, config, ev, log, sink));
  }

  /** Starts them all; rejects when one cannot start (a configuration problem all would share). */
  async start(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.start()));
  }

  /** The ready authpop holding the fewest connections, or null. */
  pick(): AuthpopSlot | null {
    let best: AuthpopSlot | null = null;
    for (const s of this.slots) if (s.isReady && (best === null || s.conns.size < best.conns.size)) best = s;
    return best;
  }

  /** The ready authpop holding connection id, or null. */
  holder(id: string): AuthpopSlot | null {
    return this.slots.find((s) => s.isReady && s.conns.has(id)) ?? null;
  }

  get running(): boolean {
    return this.slots.some((s) => s.running);
  }

  /** Every ready authpop gets m (a renewed certificate). */
  broadcast(m: PopdToAuthpop): void {
    for (const s of this.slots) s.send(m);
  }

  shutdown(): void {
    for (const s of this.slots) s.shutdown();
  }

  kill(sig: NodeJS.Signals): void {
    for (const s of this.slots) s.kill(sig);
  }
}
