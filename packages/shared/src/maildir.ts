/**
 * The maildir store: delivery (popmda), opening a mailbox and committing its
 * deletions (wrkrpop), reindexing (popctl). The maildir is the truth and
 * popcache a cache of it; see DESIGN.md, "Maildir behaviour".
 */
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { WireSize } from './wire';
import { curName, isSafeName, newBaseName, parseName, withSizes } from './uniquename';
import { CacheEntry, appendPopcache, readPopcache, uidlOf, writePopcacheAtomic } from './popcache';
import { withPopcacheLock } from './lock';
import { fsyncDir } from './fsutil';

export const SUBDIRS = ['cur', 'new', 'tmp'] as const;
/** Maildir convention: files left in tmp/ this long are debris of a crashed delivery. */
export const TMP_MAX_AGE_MS = 36 * 3600 * 1000;
export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;

/** Creates the maildir and its subdirectories (mode 0700) where missing. */
export function ensureMaildir(maildir: string): void {
  fs.mkdirSync(maildir, { recursive: true, mode: 0o700 });
  for (const d of SUBDIRS) fs.mkdirSync(path.join(maildir, d), { recursive: true, mode: 0o700 });
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
 * Delivers one message the maildir way: exclusive create in tmp/, write,
 * fsync, link into new/ (never overwriting), unlink tmp, fsync new/; then the
 * popcache line under the short lock. Throws (leaving nothing in new/ or tmp/)
 * when anything before the link fails.
 */
export async function deliver(
  maildir: string,
  input: Readable | AsyncIterable<Buffer>,
  opts: { prefix?: Buffer; lockTimeoutMs?: number } = {},
): Promise<Delivered> {
  ensureMaildir(maildir);
  let base = '';
  let tmpPath = '';
  let fh: fs.promises.FileHandle | undefined;
  for (let attempt = 0; !fh; attempt++) {
    base = newBaseName();
    tmpPath = path.join(maildir, 'tmp', base);
    try {
      fh = await fs.promises.open(tmpPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 5) throw err;
    }
  }
  const wire = new WireSize();
  let size = 0;
  let finalName = '';
  try {
    const write = async (chunk: Buffer): Promise<void> => {
      size += chunk.length;
      wire.update(chunk);
      let off = 0;
      while (off < chunk.length) off += (await fh!.write(chunk, off, chunk.length - off)).bytesWritten;
    };
    if (opts.prefix && opts.prefix.length > 0) await write(opts.prefix);
    for await (const chunk of input) await write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
    await fh.sync();
    await fh.close();
    fh = undefined;
    finalName = withSizes(base, size, wire.digest());
    // link(2) fails with EEXIST rather than replacing: a message is never overwritten.
    fs.linkSync(tmpPath, path.join(maildir, 'new', finalName));
  } catch (err) {
    if (fh) await fh.close().catch(() => undefined);
    fs.rmSync(tmpPath, { force: true });
    throw err;
  }
  const out: Delivered = { name: finalName, size, octets: wire.digest(), indexed: true };
  try {
    fs.unlinkSync(tmpPath);
    fsyncDir(path.join(maildir, 'new'));
    await withPopcacheLock(maildir, opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, () =>
      appendPopcache(maildir, { name: finalName, octets: out.octets, uidl: uidlOf(finalName) }),
    );
  } catch (err) {
    // The message is safely in new/; the next login indexes it.
    out.indexed = false;
    out.indexError = err;
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
  uidl: string;
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

/** Counts the wire octets of a regular file, refusing symlinks and anything else. */
export async function countWireOctets(file: string): Promise<{ octets: number; mtimeMs: number }> {
  const fh = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw Object.assign(new Error(`${path.basename(file)}: not a regular file`), { code: 'EFTYPE' });
    const w = new WireSize();
    for await (const chunk of fh.createReadStream({ autoClose: false, highWaterMark: 256 * 1024 })) w.update(chunk as Buffer);
    return { octets: w.digest(), mtimeMs: st.mtimeMs };
  } finally {
    await fh.close();
  }
}

/** Regular files with names the store accepts; symlinks and other types are never indexed. */
function listRegular(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isFile() && isSafeName(d.name))
    .map((d) => d.name);
}

function removeStaleTmp(maildir: string, now: number): void {
  const tmp = path.join(maildir, 'tmp');
  for (const name of listRegular(tmp)) {
    try {
      if (now - fs.lstatSync(path.join(tmp, name)).mtimeMs > TMP_MAX_AGE_MS) fs.unlinkSync(path.join(tmp, name));
    } catch {
      // Raced with another cleaner or a delivery finishing: nothing to do.
    }
  }
}

/**
 * Opens a mailbox for a session (the caller holds the maildrop lock): moves
 * new/ into cur/, reconciles popcache with cur/, rewrites it when it changed.
 * A corrupt popcache is rebuilt, never fatal.
 */
export async function openMailbox(maildir: string, opts: { lockTimeoutMs?: number; now?: number } = {}): Promise<MailboxIndex> {
  return withPopcacheLock(maildir, opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, () => indexMailbox(maildir, opts.now ?? Date.now()));
}

async function indexMailbox(maildir: string, now: number): Promise<MailboxIndex> {
  ensureMaildir(maildir);
  removeStaleTmp(maildir, now);
  let moved = 0;
  for (const name of listRegular(path.join(maildir, 'new'))) {
    const p = parseName(name);
    try {
      fs.renameSync(path.join(maildir, 'new', name), path.join(maildir, 'cur', curName(p.unique, p.flags)));
      moved++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  const cache = readPopcache(maildir);
  let changed = cache.bad > 0 || moved > 0;
  let counted = 0;
  const seen = new Set<string>();
  const messages: Message[] = [];
  for (const file of listRegular(path.join(maildir, 'cur'))) {
    const p = parseName(file);
    if (seen.has(p.unique)) continue; // two files for one unique name: serve the first only
    seen.add(p.unique);
    const cached = cache.entries.get(p.unique);
    let octets = cached?.octets ?? p.wsize;
    let time = p.time;
    if (octets === undefined || time === undefined) {
      let c: { octets: number; mtimeMs: number };
      try {
        c = await countWireOctets(path.join(maildir, 'cur', file));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ELOOP' || code === 'EFTYPE') continue;
        throw err;
      }
      if (octets === undefined) {
        octets = c.octets;
        counted++;
      }
      time ??= Math.floor(c.mtimeMs * 1000);
    }
    if (!cached || cached.octets !== octets) changed = true;
    messages.push({ unique: p.unique, file, octets, uidl: cached?.uidl ?? uidlOf(p.unique), time });
  }
  if (cache.entries.size !== messages.length) changed = true;
  messages.sort(compareMessages);
  if (changed) writePopcacheAtomic(maildir, messages.map(toEntry));
  return { messages, moved, counted, rewritten: changed };
}

function toEntry(m: Message): CacheEntry {
  return { name: m.unique, octets: m.octets, uidl: m.uidl };
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
      for (const e of cache.entries.values()) {
        if (removed.has(e.name)) continue;
        const fixed = corrections.get(e.name);
        keep.push(fixed === undefined ? e : { ...e, octets: fixed });
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
async function countUnknown(maildir: string, found: Map<string, Message>): Promise<void> {
  for (const sub of ['cur', 'new'] as const) {
    for (const file of listRegular(path.join(maildir, sub))) {
      const p = parseName(file);
      if (found.has(p.unique)) continue;
      let c: { octets: number; mtimeMs: number };
      try {
        c = await countWireOctets(path.join(maildir, sub, file));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ELOOP' || code === 'EFTYPE') continue;
        throw err;
      }
      // file is only informative here: nothing is moved or served.
      found.set(p.unique, { unique: p.unique, file, octets: c.octets, uidl: uidlOf(p.unique), time: p.time ?? Math.floor(c.mtimeMs * 1000) });
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
  await countUnknown(maildir, found);
  return withPopcacheLock(maildir, opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, async () => {
    await countUnknown(maildir, found);
    const old = readPopcache(maildir).entries;
    const messages = [...found.values()].sort(compareMessages);
    const fixed = messages.filter((m) => old.get(m.unique)?.octets !== m.octets).length;
    writePopcacheAtomic(maildir, messages.map(toEntry));
    return { messages: messages.length, fixed };
  });
}
