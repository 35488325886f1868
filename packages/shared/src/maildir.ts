/**
 * The maildir store: delivery (popmda), opening a mailbox and committing its
 * deletions (wrkrpop), reindexing (popctl). The maildir is the truth and
 * popcache a cache of it; see docs/architecture.md, "Maildir".
 */
import fs from 'node:fs';
import path from 'node:path';
import { Readable, addAbortSignal } from 'node:stream';
import { WireSize } from './wire';
import { curName, isSafeName, newBaseName, parseName, withSizes } from './uniquename';
import { CacheEntry, POPCACHE, appendPopcache, readPopcache, readPopcacheInOrder, writePopcacheAtomic } from './popcache';
import { Lock, POPCACHE_LOCK, waitLock, withPopcacheLock } from './lock';
import { fsyncDir, isTransient } from './fsutil';

export const SUBDIRS = ['cur', 'new', 'tmp'] as const;
/** Maildir convention: files left in tmp/ this long are debris of a crashed delivery. */
export const TMP_MAX_AGE_MS = 36 * 3600 * 1000;
export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;

/**
 * Creates the maildir and its subdirectories (mode 0700) where missing, and
 * makes what it created durable, so that a message fsynced into new/ cannot
 * vanish in a crash together with a directory entry nobody synced.
 */
export function ensureMaildir(maildir: string): void {
  const top = fs.mkdirSync(maildir, { recursive: true, mode: 0o700 });
  let created = top !== undefined;
  for (const d of SUBDIRS) created = fs.mkdirSync(path.join(maildir, d), { recursive: true, mode: 0o700 }) !== undefined || created;
  if (!created) return;
  fsyncDir(maildir);
  // Every directory from the first one created up to the maildir's parent holds a new entry.
  if (top !== undefined) for (let d = path.dirname(maildir); ; d = path.dirname(d)) {
    try {
      fsyncDir(d);
    } catch (err) {
      // A parent we may write but not read (a 1733 spool directory) cannot be opened to sync: best effort.
      if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
    }
    if (d === path.dirname(top) || d === path.dirname(d)) break;
  }
}

export interface Delivered {
  /** File name in new/ (the unique name with S= and W=). */
  name: string;
  size: number;
  octets: number;
  /** False when the message is in new/ but its popcache line could not be written. */
  indexed: boolean;
  indexError?: unknown;
}

/**
 * Creates tmp/NAME exclusively, retrying with a fresh name on the (unlikely)
 * collision; a name the caller chose is tried once.
 */
async function createTmp(maildir: string, chosen?: string): Promise<{ base: string; tmpPath: string; fh: fs.promises.FileHandle }> {
  const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
  for (let attempt = 0; ; attempt++) {
    const base = chosen ?? newBaseName();
    const tmpPath = path.join(maildir, 'tmp', base);
    try {
      return { base, tmpPath, fh: await fs.promises.open(tmpPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || chosen !== undefined || attempt >= 5) throw err;
    }
  }
}

/**
 * Delivers one message the maildir way: exclusive create in tmp/, write,
 * fsync, link into new/ (never overwriting), unlink tmp, fsync new/; then the
 * popcache line. Throws, leaving nothing in new/ or tmp/, when anything up to
 * and including the fsync of new/ fails, or when the popcache lock cannot be
 * had in time: the caller reports a temporary failure and the sender retries.
 * The lock is taken before the link (and held for the link and one append),
 * so that a lock timeout happens while the message can still be withdrawn.
 * An abort before the link is a failure like any other; after it, the
 * delivery completes.
 */
export async function deliver(
  maildir: string,
  input: Readable | AsyncIterable<Buffer>,
  /** base: the name to deliver under (from newBaseName), for a caller that must find the message after a crash. */
  opts: { prefix?: Buffer; lockTimeoutMs?: number; signal?: AbortSignal; base?: string } = {},
): Promise<Delivered> {
  ensureMaildir(maildir);
  // An abort (popmda on SIGTERM) destroys the input, so that a read waiting for data ends too.
  if (opts.signal && input instanceof Readable) addAbortSignal(opts.signal, input);
  const { base, tmpPath, fh } = await createTmp(maildir, opts.base);
  const wire = new WireSize();
  let size = 0;
  let newPath = '';
  let lock: Lock | undefined;
  try {
    try {
      const write = async (chunk: Buffer): Promise<void> => {
        size += chunk.length;
        wire.update(chunk);
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
      };
      if (opts.prefix && opts.prefix.length > 0) await write(opts.prefix);
      for await (const chunk of input) await write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
      opts.signal?.throwIfAborted();
      await fh.sync();
    } finally {
      await fh.close();
    }
    lock = await waitLock(path.join(maildir, POPCACHE_LOCK), opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
    const name = withSizes(base, size, wire.digest());
    // link(2) fails with EEXIST rather than replacing: a message is never overwritten.
    fs.linkSync(tmpPath, path.join(maildir, 'new', name));
    newPath = path.join(maildir, 'new', name);
    fs.rmSync(tmpPath, { force: true });
    fsyncDir(path.join(maildir, 'new'));
  } catch (err) {
    // Under the popcache lock no session has moved the message to cur/ yet, so withdrawing it is safe.
    if (newPath) fs.rmSync(newPath, { force: true });
    fs.rmSync(tmpPath, { force: true });
    lock?.release();
    throw err;
  }
  const out: Delivered = { name: path.basename(newPath), size, octets: wire.digest(), indexed: true };
  try {
    appendPopcache(maildir, { name: out.name, octets: out.octets });
  } catch (err) {
    // The message is safely in new/; the next login indexes it.
    out.indexed = false;
    out.indexError = err;
  } finally {
    lock.release();
  }
  return out;
}

export interface Message {
  /** The unique name (before ":"), what UIDL hashes. */
  unique: string;
  /** Current file name in cur/. */
  file: string;
  /** Wire octets (LIST/STAT). */
  octets: number;
  /** Delivery time, microseconds since the epoch (for ordering). */
  time: number;
}

/** Delivery order: time, ties broken by name. */
export function compareMessages(a: Message, b: Message): number {
  return a.time - b.time || (a.unique < b.unique ? -1 : a.unique > b.unique ? 1 : 0);
}

export interface MailboxIndex {
  messages: Message[];
  /** Messages moved from new/ to cur/. */
  moved: number;
  /** Messages whose size had to be counted by reading them. */
  counted: number;
  /** Whether popcache was rewritten. */
  rewritten: boolean;
}

let countBuf: Buffer | undefined;

/**
 * Counts the wire octets of a regular file, refusing symlinks and anything
 * else. Synchronous on purpose: a login may count thousands of small files,
 * and plain reads into one buffer are many times faster than async opens and
 * reads through the thread pool (the callers are a per-user worker and a CLI).
 */
export function countWireOctetsSync(file: string): { octets: number; mtimeMs: number } {
  // O_NONBLOCK: a FIFO swapped in after the listing must not hang the open.
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw Object.assign(new Error(`${path.basename(file)}: not a regular file`), { code: 'EFTYPE' });
    countBuf ??= Buffer.allocUnsafe(256 * 1024);
    const w = new WireSize();
    for (let n; (n = fs.readSync(fd, countBuf, 0, countBuf.length, null)) > 0; ) w.update(countBuf.subarray(0, n));
    return { octets: w.digest(), mtimeMs: st.mtimeMs };
  } finally {
    fs.closeSync(fd);
  }
}

export async function countWireOctets(file: string): Promise<{ octets: number; mtimeMs: number }> {
  return countWireOctetsSync(file);
}

/** Errors that mean "this file cannot be served" (gone, a symlink, not a regular file, unreadable), not "try again". */
const UNSERVABLE = new Set(['ENOENT', 'ELOOP', 'EFTYPE', 'EACCES', 'EPERM', 'EISDIR']);

function isUnservable(err: unknown): boolean {
  return UNSERVABLE.has((err as NodeJS.ErrnoException)?.code ?? '');
}

/**
 * Regular files with names the store accepts; symlinks and other types are
 * never indexed. Read entry by entry (opendir) rather than with readdir:
 * twice as fast for 100,000 names, and no array of them all at a login's peak.
 */
function* regularFiles(dir: string): Generator<string> {
  const d = fs.opendirSync(dir);
  try {
    for (let e; (e = d.readSync()) !== null; ) if (e.isFile() && isSafeName(e.name)) yield e.name;
  } finally {
    d.closeSync();
  }
}

/** Removes debris of crashed writers: tmp/ files and popcache temp files untouched for TMP_MAX_AGE_MS. */
function removeStaleTmp(maildir: string, now: number): void {
  const tmp = path.join(maildir, 'tmp');
  const stale = [
    ...[...regularFiles(tmp)].map((name) => path.join(tmp, name)),
    ...[...regularFiles(maildir)]
      .filter((name) => name.startsWith(`${POPCACHE}.tmp.`))
      .map((name) => path.join(maildir, name)),
  ];
  for (const file of stale) {
    try {
      if (now - fs.lstatSync(file).mtimeMs > TMP_MAX_AGE_MS) fs.unlinkSync(file);
    } catch {
      // Raced with another cleaner or a delivery finishing: nothing to do.
    }
  }
}

/** Moves new/NAME to cur/NAME:2,; a file that cannot be moved stays in new/, unserved, rather than stopping the login. */
function moveNewToCur(maildir: string): number {
  let moved = 0;
  // Listed first: the loop empties the directory it would be reading.
  for (const name of [...regularFiles(path.join(maildir, 'new'))]) {
    const p = parseName(name);
    if (p.unique === '') continue;
    try {
      fs.renameSync(path.join(maildir, 'new', name), path.join(maildir, 'cur', curName(p.unique, p.flags)));
      moved++;
    } catch (err) {
      if (isTransient(err)) throw err;
    }
  }
  return moved;
}

/**
 * Opens a mailbox for a session (the caller holds the maildrop lock): moves
 * new/ into cur/, reconciles popcache with cur/, and rewrites it unless it
 * already holds exactly the messages served, in order. A corrupt popcache
 * is rebuilt, never fatal.
 */
export async function openMailbox(maildir: string, opts: { lockTimeoutMs?: number; now?: number } = {}): Promise<MailboxIndex> {
  return withPopcacheLock(maildir, opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, () => indexMailbox(maildir, opts.now ?? Date.now()));
}

/** Octets of a message whose name has no W=, until popcache or a count tells them. */
const UNKNOWN = -1;

function indexMailbox(maildir: string, now: number): MailboxIndex {
  ensureMaildir(maildir);
  removeStaleTmp(maildir, now);
  const moved = moveNewToCur(maildir);
  const messages = listCur(maildir);
  // Also in order after new mail when popmda appended its lines (in delivery order, as usual).
  const inOrder = readPopcacheInOrder(maildir, messages);
  const cache = inOrder ? null : readPopcache(maildir);
  let counted = 0;
  let kept = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    const cached = inOrder ? inOrder[i] : cache!.entries.get(m.unique);
    // When the cache and the name's W= disagree, one was tampered with: count the file itself.
    if (cached !== undefined) m.octets = m.octets === UNKNOWN || m.octets === cached ? cached : UNKNOWN;
    if (m.octets === UNKNOWN) {
      try {
        m.octets = countWireOctetsSync(path.join(maildir, 'cur', m.file)).octets;
      } catch (err) {
        if (isUnservable(err)) continue;
        throw err;
      }
      counted++;
    }
    messages[kept++] = m;
  }
  messages.length = kept;
  const current = inOrder ? kept === inOrder.length && messages.every((m, i) => m.octets === inOrder[i]) : cache!.bad === 0 && sameEntries(cache!.entries, messages);
  if (!current) writePopcacheAtomic(maildir, messages.map(toEntry));
  return { messages, moved, counted, rewritten: !current };
}

/** Whether popcache's entries, in file order, are these messages with these octets: what a rewrite would write. */
function sameEntries(entries: Map<string, number>, messages: Message[]): boolean {
  if (entries.size !== messages.length) return false;
  let i = 0;
  for (const [name, octets] of entries) {
    const m = messages[i++];
    if (m.unique !== name || m.octets !== octets) return false;
  }
  return true;
}

/** cur/'s messages in delivery order, one per unique name, with the octets of W= (else UNKNOWN). */
function listCur(maildir: string): Message[] {
  const listed: Message[] = [];
  // Two files for one unique name (a copy with other flags): serve the first listed only. A time taken
  // from the name makes such files neighbours after the sort; those without one are caught here.
  const untimed = new Set<string>();
  for (const file of regularFiles(path.join(maildir, 'cur'))) {
    const p = parseName(file);
    if (p.unique === '') continue;
    let time = p.time;
    if (time === undefined) {
      if (untimed.has(p.unique)) continue;
      untimed.add(p.unique);
      try {
        const st = fs.lstatSync(path.join(maildir, 'cur', file));
        if (!st.isFile()) continue;
        time = Math.floor(st.mtimeMs * 1000);
      } catch (err) {
        if (isUnservable(err)) continue;
        throw err;
      }
    }
    listed.push({ unique: p.unique, file, octets: p.wsize ?? UNKNOWN, time });
  }
  return onePerName(listed.sort(compareMessages));
}

function toEntry(m: Message): CacheEntry {
  return { name: m.unique, octets: m.octets };
}

/** Drops neighbours with the unique name of the one before (the stable sort kept the first listed first); in place. */
function onePerName(sorted: Message[]): Message[] {
  let n = 0;
  for (const m of sorted) if (n === 0 || sorted[n - 1].unique !== m.unique) sorted[n++] = m;
  sorted.length = n;
  return sorted;
}

/** Marks a message seen after RETR (":2,S"), so an IMAP server on the same maildir agrees. Returns the new file name. */
export function markSeen(maildir: string, m: Message): string {
  const p = parseName(m.file);
  if (p.flags.includes('S')) return m.file;
  const next = curName(p.unique, p.flags + 'S');
  fs.renameSync(path.join(maildir, 'cur', m.file), path.join(maildir, 'cur', next));
  return next;
}

export interface CommitResult {
  removed: number;
  failed: number;
}

/**
 * UPDATE state: removes the deleted messages, then rewrites popcache under
 * the lock without the removed ones (keeping lines appended by deliveries
 * during the session) and with any corrected sizes.
 */
export async function commitDeletions(
  maildir: string,
  deleted: Message[],
  corrections: Map<string, number> = new Map(),
  opts: { lockTimeoutMs?: number } = {},
): Promise<CommitResult> {
  const removed = new Set<string>();
  let failed = 0;
  for (const m of deleted) {
    try {
      fs.unlinkSync(path.join(maildir, 'cur', m.file));
      removed.add(m.unique);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') removed.add(m.unique);
      else failed++;
    }
  }
  if (removed.size > 0) fsyncDir(path.join(maildir, 'cur'));
  if (removed.size > 0 || corrections.size > 0) {
    await withPopcacheLock(maildir, opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, () => {
      const cache = readPopcache(maildir);
      const keep: CacheEntry[] = [];
      for (const [name, octets] of cache.entries) {
        if (!removed.has(name)) keep.push({ name, octets: corrections.get(name) ?? octets });
      }
      writePopcacheAtomic(maildir, keep);
    });
  }
  return { removed: removed.size, failed };
}

export interface RebuildResult {
  /** Messages now in popcache (new/ and cur/). */
  messages: number;
  /** Entries that replaced a missing or different line of the old popcache. */
  fixed: number;
}

/** Counts every message of new/ and cur/ not yet in found, keyed by unique name. */
function countUnknown(maildir: string, found: Map<string, Message>): void {
  for (const sub of ['cur', 'new'] as const) {
    for (const file of regularFiles(path.join(maildir, sub))) {
      const p = parseName(file);
      if (found.has(p.unique)) continue;
      let c: { octets: number; mtimeMs: number };
      try {
        c = countWireOctetsSync(path.join(maildir, sub, file));
      } catch (err) {
        if (isUnservable(err)) continue;
        throw err;
      }
      // file is only informative here: nothing is moved or served.
      found.set(p.unique, { unique: p.unique, file, octets: c.octets, time: p.time ?? Math.floor(c.mtimeMs * 1000) });
    }
  }
}

/**
 * Rebuilds popcache from new/ and cur/ (popctl reindex), counting the wire
 * octets of every message rather than trusting names or the old cache, and
 * moving nothing. The caller holds the maildrop lock, so no session moves or
 * deletes files meanwhile. Counting happens without the popcache lock so that
 * deliveries are not held up; the lock is taken only to count what arrived in
 * the meantime and to replace the file.
 */
export async function rebuildPopcache(maildir: string, opts: { lockTimeoutMs?: number } = {}): Promise<RebuildResult> {
  for (const d of ['cur', 'new'] as const) {
    if (!fs.statSync(path.join(maildir, d)).isDirectory()) throw Object.assign(new Error(`${d}: not a directory`), { code: 'ENOTDIR' });
  }
  const found = new Map<string, Message>();
  countUnknown(maildir, found);
  return withPopcacheLock(maildir, opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, () => {
    countUnknown(maildir, found);
    const old = readPopcache(maildir).entries;
    const messages = [...found.values()].sort(compareMessages);
    const fixed = messages.filter((m) => old.get(m.unique) !== m.octets).length;
    writePopcacheAtomic(maildir, messages.map(toEntry));
    return { messages: messages.length, fixed };
  });
}
