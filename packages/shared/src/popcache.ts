/**
 * popcache: one line per message, "uniquename SP octets SP uidl", where uidl
 * is the lowercase hex SHA-256 of the unique name (compatible with the C
 * original). It is a cache: the maildir is the truth.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isSafeName } from './uniquename';
import { fsyncDir } from './fsutil';

export const POPCACHE = 'popcache';

export interface CacheEntry {
  name: string;
  octets: number;
  uidl: string;
}

export function uidlOf(name: string): string {
  // One-shot crypto.hash: about twice as fast as createHash, and a login checks every popcache line with it.
  return crypto.hash('sha256', name, 'hex');
}

export function entryLine(e: CacheEntry): string {
  return `${e.name} ${e.octets} ${e.uidl}\n`;
}

export interface ParsedCache {
  /** Valid entries by unique name; a later line for the same name wins. */
  entries: Map<string, CacheEntry>;
  /** Lines that were skipped (corrupt, truncated, wrong uidl, duplicate). */
  bad: number;
}

const UIDL_LENGTH = 64;
const MAX_OCTETS_DIGITS = 15;

/** The octets field text[from, to) as a number: decimal, no sign, no leading zero, at most 15 digits; else -1. */
function octetsIn(text: string, from: number, to: number): number {
  const n = to - from;
  if (n < 1 || n > MAX_OCTETS_DIGITS || (n > 1 && text.charCodeAt(from) === 0x30)) return -1;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
  }
  return Number(text.slice(from, to));
}

/** The entry in text[start, end) (a line without its "\n"), or null when the line is not one. */
function entryIn(text: string, start: number, end: number): CacheEntry | null {
  // "name SP octets SP uidl": the name has no space; the uidl is the last 64 characters.
  const sp1 = text.indexOf(' ', start);
  const sp2 = end - UIDL_LENGTH - 1;
  if (sp1 <= start || sp2 <= sp1 || text.charCodeAt(sp2) !== 0x20) return null;
  const octets = octetsIn(text, sp1 + 1, sp2);
  if (octets < 0) return null;
  const name = text.slice(start, sp1);
  if (!isSafeName(name) || name.includes(':')) return null;
  // The hash check also proves the field is 64 lowercase hex digits.
  const uidl = uidlOf(name);
  if (text.slice(sp2 + 1, end) !== uidl) return null;
  return { name, octets, uidl };
}

/** A scan rather than split and a regex per line: a login parses every line. */
export function parsePopcache(text: string): ParsedCache {
  const entries = new Map<string, CacheEntry>();
  let bad = 0;
  let start = 0;
  for (let nl = text.indexOf('\n'); nl !== -1; start = nl + 1, nl = text.indexOf('\n', start)) {
    const e = entryIn(text, start, nl);
    if (e === null) {
      bad++;
      continue;
    }
    if (entries.has(e.name)) bad++;
    entries.set(e.name, e);
  }
  // The piece after the last "\n" is empty, or a truncated line: skip it.
  if (start < text.length) bad++;
  return { entries, bad };
}

export function serializePopcache(entries: Iterable<CacheEntry>): string {
  let s = '';
  for (const e of entries) s += entryLine(e);
  return s;
}

/** Larger than any real popcache (about 150 bytes a message): treated as corrupt rather than read into memory. */
export const MAX_POPCACHE_BYTES = 256 * 1024 * 1024;

export function readPopcache(maildir: string): ParsedCache {
  const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;
  let fd: number;
  try {
    // popcache is the user's file: a symlink, FIFO or device there must not redirect or hang a login.
    fd = fs.openSync(path.join(maildir, POPCACHE), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { entries: new Map(), bad: 0 };
    if (code === 'ELOOP') return { entries: new Map(), bad: 1 };
    throw err;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.size > MAX_POPCACHE_BYTES) return { entries: new Map(), bad: 1 };
    return parsePopcache(fs.readFileSync(fd, 'latin1'));
  } finally {
    fs.closeSync(fd);
  }
}

// O_NOFOLLOW and O_NONBLOCK: a symlink or FIFO planted in the maildir must neither redirect a write nor hang it.
const { O_WRONLY, O_CREAT, O_TRUNC, O_APPEND, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

/** Replaces popcache atomically: temp file, fsync, rename, fsync the directory. */
export function writePopcacheAtomic(maildir: string, entries: Iterable<CacheEntry>): void {
  const tmp = path.join(maildir, `${POPCACHE}.tmp.${process.pid}`);
  const fd = fs.openSync(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK, 0o600);
  try {
    fs.writeSync(fd, serializePopcache(entries), null, 'latin1');
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, path.join(maildir, POPCACHE));
  fsyncDir(maildir);
}

/**
 * Appends one entry (the caller holds the popcache lock). A failed write is
 * cut back off, so that a full disk leaves no partial line to merge with the
 * next one.
 */
export function appendPopcache(maildir: string, e: CacheEntry): void {
  const fd = fs.openSync(path.join(maildir, POPCACHE), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK, 0o600);
  try {
    const before = fs.fstatSync(fd).size;
    try {
      const line = Buffer.from(entryLine(e), 'latin1');
      const n = fs.writeSync(fd, line);
      if (n !== line.length) throw Object.assign(new Error('popcache: short write'), { code: 'EIO' });
      fs.fsyncSync(fd);
    } catch (err) {
      try {
        fs.ftruncateSync(fd, before);
      } catch {
        // The reader skips a partial line and the next login rebuilds the file.
      }
      throw err;
    }
  } finally {
    fs.closeSync(fd);
  }
}
