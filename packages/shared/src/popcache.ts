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
  return crypto.createHash('sha256').update(name).digest('hex');
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

const LINE = /^(\S+) (0|[1-9]\d{0,14}) ([0-9a-f]{64})$/;

export function parsePopcache(text: string): ParsedCache {
  const entries = new Map<string, CacheEntry>();
  let bad = 0;
  const lines = text.split('\n');
  // The piece after the last "\n" is empty, or a truncated line: skip it.
  if (lines[lines.length - 1] !== '') bad++;
  for (let i = 0; i < lines.length - 1; i++) {
    const m = LINE.exec(lines[i]);
    if (!m || !isSafeName(m[1]) || m[1].includes(':') || uidlOf(m[1]) !== m[3]) {
      bad++;
      continue;
    }
    if (entries.has(m[1])) bad++;
    entries.set(m[1], { name: m[1], octets: Number(m[2]), uidl: m[3] });
  }
  return { entries, bad };
}

export function serializePopcache(entries: Iterable<CacheEntry>): string {
  let s = '';
  for (const e of entries) s += entryLine(e);
  return s;
}

export function readPopcache(maildir: string): ParsedCache {
  let text: string;
  try {
    text = fs.readFileSync(path.join(maildir, POPCACHE), 'latin1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: new Map(), bad: 0 };
    throw err;
  }
  return parsePopcache(text);
}

/** Replaces popcache atomically: temp file, fsync, rename, fsync the directory. */
export function writePopcacheAtomic(maildir: string, entries: Iterable<CacheEntry>): void {
  const tmp = path.join(maildir, `${POPCACHE}.tmp.${process.pid}`);
  const fd = fs.openSync(tmp, 'w', 0o600);
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

/** Appends one entry (the caller holds the popcache lock). */
export function appendPopcache(maildir: string, e: CacheEntry): void {
  const fd = fs.openSync(path.join(maildir, POPCACHE), 'a', 0o600);
  try {
    fs.writeSync(fd, entryLine(e), null, 'latin1');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
