// identity: root
/**
 * Root code: popd's wrkrpop processes (docs/architecture.md, "wrkrpop").
 * A worker starts as a spare (root, holding nothing but its channel, all
 * its code loaded), is confined once (chroot to a root directory, drop to
 * uid:gid), then serves sessions: per uid, every session of that uid:gid
 * until it has been idle for -K seconds; per session, one and exits. Each
 * session is a fresh socketpair: one end to the worker, the other to
 * authpop. popd also knows which users have a session ([IN-USE]).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import nacl from 'tweetnacl';
import { socketpair } from '@popd/channel';
import { parseFromWorker, PROTOCOL, WorkerToPopd } from '@popd/shared/ipc';
import type { Logger } from '@popd/shared/log';
import { SPARE_NICE, SPARES_PER_SESSION, SPARES_PER_UID } from '@popd/shared/params';
import type { Tables, UserInfo } from '@popd/shared/tables';
import { Child } from './child';
import type { ChildSink } from './logs';

/** -W: what one worker process may serve. */
export type Isolation = 'uid' | 'session';

export interface WorkerOptions {
  script: string;
  isolation: Isolation;
  /** popd is root: workers chroot and drop. */
  drop: boolean;
  /** A session's idle limit (-i). */
  idleTimeoutMs: number;
  /** A per-uid worker without sessions this long is retired (-K). */
  workerIdleMs: number;
  verbosity: number;
  log: Logger;
  sink: ChildSink;
}

/**
 * Node flags for wrkrpop. A young generation of 4 MB instead of 16 lowers a
 * worker's peak RSS while it holds a 100,000-message mailbox from about
 * 163 to 140 MB, at no measurable cost in time (npm run bench -- wrkrpop).
 */
export const WORKER_NODE_ARGS: readonly string[] = ['--max-semi-space-size=4'];

const newId = (): string => Buffer.from(nacl.randomBytes(12)).toString('hex');

/**
 * The deepest directory that holds every path given (absolute, normalised
 * by usertab's parser): a per-uid worker's root. One maildir is its own root.
 */
export function commonRoot(dirs: readonly string[]): string {
  let parts = dirs[0].split('/').filter(Boolean);
  for (const d of dirs.slice(1)) {
    const p = d.split('/').filter(Boolean);
    let i = 0;
    while (i < parts.length && i < p.length && parts[i] === p[i]) i++;
    parts = parts.slice(0, i);
  }
  return '/' + parts.join('/');
}

/** Each uid:gid's root: the common root of its users' maildirs. */
export function rootsOf(tables: Tables): Map<string, string> {
  const dirs = new Map<string, string[]>();
  for (const u of tables.users.values()) {
    const k = `${u.uid}:${u.gid}`;
    const list = dirs.get(k);
    if (list) list.push(u.maildir);
    else dirs.set(k, [u.maildir]);
  }
  return new Map([...dirs].map(([k, list]) => [k, commonRoot(list)]));
}

class Worker {
  /** Its uid:gid key while it takes sessions (per uid); null for a spare, a per-session or a retired worker. */
  key: string | null = null;
  root = '';
  readonly sessions = new Map<string, string>();
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(readonly child: Child<WorkerToPopd>) {}

  /** Runs onIdle after ms unless a session (or the worker's end) comes first. */
  startIdle(ms: number, onIdle: () => void): void {
    this.stopIdle();
    this.idleTimer = setTimeout(onIdle, ms);
    this.idleTimer.unref();
  }

  stopIdle(): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}

interface Live {
  worker: Worker;
  sid: string;
  ended: Promise<void>;
  end: () => void;
}

/**
 * Sets the nice value of w's every thread (on Linux a nice value is a
 * thread's, and threads started meanwhile took the old one: V8's compiler
 * and GC helpers must not stay at SPARE_NICE once the worker serves). Only
 * root may lower a nice value again, so as an ordinary user spares keep the
 * default.
 */
function setNice(w: Worker, nice: number): void {
  if (process.getuid?.() !== 0 || w.child.pid === 0) return;
  let tids: number[];
  try {
    tids = fs.readdirSync(`/proc/${w.child.pid}/task`).map(Number);
  } catch {
    tids = [w.child.pid]; // no /proc (OpenBSD, where the value is the process's)
  }
  for (const tid of tids) {
    try {
      os.setPriority(tid, nice);
    } catch {
      // It exited meanwhile.
    }
  }
}

export class WrkrpopSupervisor {
  private readonly spares = new Set<Worker>();
  private readonly byKey = new Map<string, Worker>();
  private readonly all = new Set<Worker>();
  /** Each user's live session: one at a time ([IN-USE]). */
  private readonly live = new Map<string, Live>();
  private roots = new Map<string, string>();
  private stopped = false;

  constructor(private readonly o: WorkerOptions) {}

  private spawn(): Worker {
    let w: Worker | null = null;
    const child = new Child<WorkerToPopd>(
      'wrkrpop',
      this.o.script,
      WORKER_NODE_ARGS,
      parseFromWorker,
      {
        message: (m) => {
          if (m.t === 'ended' && w !== null) this.ended(w, m.sid);
        },
        exit: (code, signal) => {
          if (w !== null) this.exited(w, code, signal);
        },
      },
      this.o.log,
      this.o.sink,
    );
    w = new Worker(child);
    this.all.add(w);
    return w;
  }

  /** Keeps the spares this mode needs started. */
  warm(): void {
    const want = this.o.isolation === 'uid' ? SPARES_PER_UID : SPARES_PER_SESSION;
    while (!this.stopped && this.spares.size < want) {
      const w = this.spawn();
      setNice(w, SPARE_NICE);
      this.spares.add(w);
    }
  }

  /** New tables: a worker whose root no longer covers its uid's maildirs takes no more sessions and ends with its last. */
  setTables(tables: Tables): void {
    this.roots = rootsOf(tables);
    for (const [key, w] of this.byKey) if (this.roots.get(key) !== w.root) this.retire(w);
  }

  inUse(user: string): boolean {
    return this.live.has(user);
  }

  /** Resolves true once the user has no live session (now or within ms), false if the session goes on. */
  waitFree(user: string, ms: number): Promise<boolean> {
    const ended = this.live.get(user)?.ended;
    if (ended === undefined) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      void ended.then(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  get sessions(): number {
    return this.live.size;
  }

  get workers(): number {
    return this.all.size - this.spares.size;
  }

  private take(): Worker {
    const [spare] = this.spares;
    if (spare !== undefined && spare.child.alive) {
      this.spares.delete(spare);
      setNice(spare, 0);
    }
    // The next spare starts after this login is answered.
    setImmediate(() => this.warm());
    return spare !== undefined && spare.child.alive ? spare : this.spawn();
  }

  private confine(w: Worker, info: UserInfo, root: string): void {
    w.root = root;
    w.child.send({ t: 'confine', v: PROTOCOL, uid: info.uid, gid: info.gid, root, drop: this.o.drop, idleTimeoutMs: this.o.idleTimeoutMs, verbosity: this.o.verbosity });
  }

  /**
   * A session for this user: returns authpop's end of its socket (the
   * caller passes it on and closes it), or null when no worker took it.
   */
  startSession(info: UserInfo): number | null {
    let w: Worker;
    if (this.o.isolation === 'uid') {
      const key = `${info.uid}:${info.gid}`;
      const found = this.byKey.get(key);
      if (found !== undefined && found.child.alive) w = found;
      else {
        w = this.take();
        this.confine(w, info, this.roots.get(key) ?? info.maildir);
        w.key = key;
        this.byKey.set(key, w);
      }
    } else {
      w = this.take();
      this.confine(w, info, info.maildir);
    }
    const [mine, theirs] = socketpair('stream');
    const sid = newId();
    const ok = w.child.send({ t: 'session', sid, user: info.user, maildir: path.relative(w.root, info.maildir) }, theirs);
    fs.closeSync(theirs);
    if (!ok) {
      fs.closeSync(mine);
      return null;
    }
    w.stopIdle();
    w.sessions.set(sid, info.user);
    let end = (): void => undefined;
    const ended = new Promise<void>((resolve) => (end = resolve));
    this.live.set(info.user, { worker: w, sid, ended, end });
    if (this.o.isolation === 'session') this.retire(w);
    this.o.log.debug(`session for ${info.user}: wrkrpop[${w.child.pid}]`);
    return mine;
  }

  private ended(w: Worker, sid: string): void {
    const user = w.sessions.get(sid);
    // A worker may only end its own sessions.
    if (user === undefined) return;
    w.sessions.delete(sid);
    const l = this.live.get(user);
    if (l !== undefined && l.sid === sid) {
      this.live.delete(user);
      l.end();
    }
    if (w.sessions.size === 0 && w.key !== null) w.startIdle(this.o.workerIdleMs, () => this.retire(w));
  }

  /** No more sessions for w: it exits when its last one ends. */
  private retire(w: Worker): void {
    if (w.key !== null && this.byKey.get(w.key) === w) this.byKey.delete(w.key);
    w.key = null;
    w.stopIdle();
    w.child.send({ t: 'retire' });
  }

  private exited(w: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    this.all.delete(w);
    this.spares.delete(w);
    if (w.key !== null && this.byKey.get(w.key) === w) this.byKey.delete(w.key);
    w.key = null;
    w.stopIdle();
    const n = w.sessions.size;
    for (const sid of [...w.sessions.keys()]) this.ended(w, sid);
    if (code !== 0 && !(this.stopped && signal !== null)) {
      this.o.log.notice(`wrkrpop[${w.child.pid}] exited with ${signal ?? `status ${code}`}${n > 0 ? `, ending ${n} session${n === 1 ? '' : 's'}` : ''}`);
    }
  }

  /** Shutdown: no new spare; the spares are ended (they hold nothing); the others end with their sessions. */
  stop(): void {
    this.stopped = true;
    for (const w of this.spares) w.child.kill('SIGKILL');
    for (const w of [...this.byKey.values()]) this.retire(w);
  }

  signalAll(sig: NodeJS.Signals): void {
    for (const w of this.all) w.child.kill(sig);
  }
}
