// identity: the mail user, the recipient, the admin
/**
 * Cross-process locks with flock(2) from fs-ext: Node has no flock, and
 * flock locks vanish with the process that held them, so a killed worker or
 * delivery agent never leaves a stale lock.
 *
 * Two lock files in a maildir, so that a delivery never waits for a POP session:
 *  - popcache.lock: short, around every popcache read-modify-write;
 *  - maildrop.lock: held by wrkrpop for a whole session.
 * popctl import also locks its record file, and shares a lock on an mbox.
 */
import fs from 'node:fs';
import path from 'node:path';
import { flockSync } from 'fs-ext';

export const POPCACHE_LOCK = 'popcache.lock';
export const MAILDROP_LOCK = 'maildrop.lock';

export class Lock {
  constructor(private fd: number | null) {}

  release(): void {
    if (this.fd === null) return;
    // Closing the descriptor drops the flock.
    fs.closeSync(this.fd);
    this.fd = null;
  }
}

const isBusy = (err: unknown): boolean => ['EWOULDBLOCK', 'EAGAIN'].includes((err as NodeJS.ErrnoException).code ?? '');

function openLockFile(file: string): number {
  const { O_RDWR, O_CREAT, O_NOFOLLOW, O_CLOEXEC } = fs.constants as typeof fs.constants & { O_CLOEXEC?: number };
  return fs.openSync(file, O_RDWR | O_CREAT | O_NOFOLLOW | (O_CLOEXEC ?? 0), 0o600);
}

/** Takes the lock now or returns null when another process holds it. */
export function tryLock(file: string): Lock | null {
  const fd = openLockFile(file);
  try {
    flockSync(fd, 'exnb');
    return new Lock(fd);
  } catch (err) {
    fs.closeSync(fd);
    if (isBusy(err)) return null;
    throw err;
  }
}

/**
 * Takes a shared flock on an open file now; false while another process
 * holds an exclusive one (BSD mail.local does while it appends to an mbox).
 * It lasts until fd is closed.
 */
export function tryShareLock(fd: number): boolean {
  try {
    flockSync(fd, 'shnb');
    return true;
  } catch (err) {
    if (isBusy(err)) return false;
    throw err;
  }
}

export class LockTimeout extends Error {
  code = 'ELOCKED';
  constructor(file: string) {
    super(`lock ${path.basename(file)} busy`);
  }
}

/** Waits for the lock without blocking the event loop, up to timeoutMs. */
export async function waitLock(file: string, timeoutMs: number): Promise<Lock> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 1; ; delay = Math.min(delay * 2, 50)) {
    const l = tryLock(file);
    if (l) return l;
    if (Date.now() >= deadline) throw new LockTimeout(file);
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** Runs fn while holding the popcache lock of maildir. */
export async function withPopcacheLock<T>(maildir: string, timeoutMs: number, fn: () => T | Promise<T>): Promise<T> {
  const l = await waitLock(path.join(maildir, POPCACHE_LOCK), timeoutMs);
  try {
    return await fn();
  } finally {
    l.release();
  }
}
