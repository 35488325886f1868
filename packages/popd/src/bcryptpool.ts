// identity: root
/**
 * bcrypt hashes computed in worker threads, one job per thread at a time:
 * popd's event loop runs no bcrypt round, and several cores share the work.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { HashJob } from './bcrypt-thread';

const SCRIPT = path.join(__dirname, 'bcrypt-thread.js');

interface Slot {
  worker: Worker;
  done: ((r: string | Error) => void) | null;
  gone: boolean;
}

export class BcryptPool {
  private readonly slots = new Set<Slot>();
  private readonly idle: Slot[] = [];
  private closed = false;

  /**
   * Every first thread runs. A thread opens /proc/self/maps without
   * close-on-exec as it starts (V8), so popd starts no child before this
   * (docs/architecture.md, "Children are hostile").
   */
  readonly ready: Promise<void>;

  constructor(readonly size: number) {
    this.ready = Promise.all(Array.from({ length: size }, () => this.spawn())).then(() => undefined);
  }

  /** Starts a thread; resolves once it runs, or is lost. */
  private spawn(): Promise<void> {
    const slot: Slot = { worker: new Worker(SCRIPT), done: null, gone: false };
    this.slots.add(slot);
    this.idle.push(slot);
    slot.worker.on('message', (hash: string) => {
      const done = slot.done;
      slot.done = null;
      this.idle.push(slot);
      done?.(hash);
    });
    // A thread that dies fails its job and is replaced.
    const lost = (why: string): void => {
      if (slot.gone) return;
      slot.gone = true;
      this.slots.delete(slot);
      const i = this.idle.indexOf(slot);
      if (i >= 0) this.idle.splice(i, 1);
      slot.done?.(new Error(`bcrypt thread: ${why}`));
      slot.done = null;
      if (!this.closed) void this.spawn();
    };
    slot.worker.on('error', (err) => lost(err.message));
    slot.worker.on('exit', (code) => lost(`exited with status ${code}`));
    return new Promise((resolve) => {
      slot.worker.once('online', resolve);
      slot.worker.once('exit', resolve);
    });
  }

  /** The caller keeps the jobs under way at most size (Verifier does). */
  hash(pass: string, salt: string): Promise<string> {
    const slot = this.idle.pop();
    if (slot === undefined) return Promise.reject(new Error('no idle bcrypt thread'));
    return new Promise((resolve, reject) => {
      slot.done = (r) => (r instanceof Error ? reject(r) : resolve(r));
      const job: HashJob = { pass, salt };
      slot.worker.postMessage(job);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.slots].map((s) => s.worker.terminate()));
  }
}
