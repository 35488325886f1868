/**
 * wrkrpop processes: one per session, plus one warm spare started before it
 * is needed so that Node's start-up is not on the login path. Tracks which
 * users have a live session (a second login gets [IN-USE]).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { parseFromWorker, WorkerStart } from '@popd/shared/ipc';
import type { Logger } from '@popd/shared/log';
import type { UserInfo } from '@popd/shared/tables';
import type { ChildSink } from './childlog';
import { childLines, onChildMessage } from './childio';

export interface WorkerOptions {
  script: string;
  /** popd is root: the worker chroots and drops itself. */
  drop: boolean;
  idleTimeoutMs: number;
  verbosity: number;
  log: Logger;
  child: ChildSink;
}

/**
 * Node flags for wrkrpop. A young generation of 4 MB instead of 16 lowers a
 * worker's peak RSS while it holds a 100,000-message mailbox from about
 * 163 to 140 MB, at no measurable cost in time (npm run bench -- wrkrpop).
 */
export const WORKER_NODE_ARGS: readonly string[] = ['--max-semi-space-size=4'];

const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null && c.connected;

export class Workers {
  private spare: ChildProcess | null = null;
  /** Each user's live worker, and its exit: one listener per worker, however many logins wait for it. */
  private readonly live = new Map<string, { child: ChildProcess; exited: Promise<void> }>();
  private stopped = false;

  constructor(private readonly o: WorkerOptions) {}

  private spawnOne(): ChildProcess {
    const c = spawn(process.execPath, [...WORKER_NODE_ARGS, this.o.script], { stdio: ['pipe', 'ignore', 'pipe', 'ipc'] });
    const pid = c.pid ?? 0;
    c.on('error', (err) => this.o.log.err(`cannot start wrkrpop: ${err.message}`));
    c.stdin!.on('error', () => undefined); // its end goes to authpop; errors show up there
    childLines(c.stderr!, (line) => this.o.child('wrkrpop', pid, 'err', line));
    onChildMessage(c, () => this.o.log.err(`wrkrpop[${pid}] sent a handle; killing it`), (m) => {
      const rec = parseFromWorker(m);
      if (rec === null) {
        this.o.log.err(`wrkrpop[${pid}] sent a malformed message; killing it`);
        c.kill('SIGKILL');
        return;
      }
      this.o.child('wrkrpop', pid, rec.level, rec.msg);
    });
    return c;
  }

  /** Starts a spare if there is none. */
  warm(): void {
    if (this.stopped || (this.spare !== null && alive(this.spare))) return;
    const c = this.spawnOne();
    c.on('exit', () => {
      if (this.spare === c) this.spare = null;
    });
    this.spare = c;
  }

  inUse(user: string): boolean {
    return this.live.has(user);
  }

  /** Resolves true once the user has no live session (now or within ms), false if the session goes on. */
  waitFree(user: string, ms: number): Promise<boolean> {
    const exited = this.live.get(user)?.exited;
    if (exited === undefined) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      void exited.then(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  get sessions(): number {
    return this.live.size;
  }

  /** A worker for this user (the spare when there is one); its stdin is the socket to pass to authpop. */
  start(info: UserInfo): ChildProcess {
    const c = this.spare !== null && alive(this.spare) ? this.spare : this.spawnOne();
    this.spare = null;
    const msg: WorkerStart = { t: 'start', user: info.user, maildir: info.maildir, uid: info.uid, gid: info.gid, drop: this.o.drop, idleTimeoutMs: this.o.idleTimeoutMs, verbosity: this.o.verbosity };
    c.send(msg);
    const exited = new Promise<void>((resolve) =>
      c.on('exit', (code, signal) => {
        if (this.live.get(info.user)?.child === c) this.live.delete(info.user);
        if (code !== 0) this.o.log.notice(`wrkrpop[${c.pid}] for ${info.user} exited with ${signal ?? `status ${code}`}`);
        resolve();
      }),
    );
    this.live.set(info.user, { child: c, exited });
    // The next spare starts after this login is answered.
    setImmediate(() => this.warm());
    return c;
  }

  /** No new spare; the current one is ended (it holds nothing). */
  stopSpare(): void {
    this.stopped = true;
    this.spare?.kill('SIGKILL');
    this.spare = null;
  }

  signalAll(sig: NodeJS.Signals): void {
    for (const { child } of this.live.values()) child.kill(sig);
  }
}
