/**
 * Helpers for testing the maildir store: a reference wire conversion written
 * independently of packages/shared/src/wire.ts, the inputs every byte-exact
 * test uses, and readers for what a maildir holds.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isRoot, MAILUSER, tmpdir } from './util';

/**
 * The wire form by the plainest possible reading of docs/architecture.md ("Maildir"): a LF not
 * preceded by CR gets one, and a non-empty message that does not end in LF
 * gets CRLF appended.
 */
export function referenceWire(b: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x0a && (i === 0 || b[i - 1] !== 0x0d)) out.push(0x0d);
    out.push(b[i]);
  }
  if (b.length > 0 && b[b.length - 1] !== 0x0a) out.push(0x0d, 0x0a);
  return Buffer.from(out);
}

/** The same count for inputs too big for referenceWire's array (the 50 MB message). */
export function referenceWireSize(b: Buffer): number {
  let n = b.length;
  for (let i = 0; i < b.length; i++) if (b[i] === 0x0a && (i === 0 || b[i - 1] !== 0x0d)) n++;
  return n + (b.length > 0 && b[b.length - 1] !== 0x0a ? 2 : 0);
}

/** Splits buf at the given offsets (sorted, deduplicated, in range). */
export function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.filter((c) => c > 0 && c < buf.length))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(buf.subarray(from, p));
    from = p;
  }
  out.push(buf.subarray(from));
  return out;
}

/**
 * Runs an in-place edit (the worker's WireEdit) on chunk as the worker does: placed after other bytes in a larger buffer with room for it
 * to double. Throws if the edit touched what lies before the chunk; returns
 * the edited bytes.
 */
export function editInPlace(chunk: Buffer, edit: (buf: Buffer, start: number, end: number) => number): Buffer {
  const before = Buffer.from('before the chunk');
  const buf = Buffer.alloc(before.length + 2 * chunk.length, 0xaa);
  before.copy(buf);
  chunk.copy(buf, before.length);
  const end = edit(buf, before.length, before.length + chunk.length);
  if (!buf.subarray(0, before.length).equals(before)) throw new Error('the edit wrote before its chunk');
  return buf.subarray(before.length, end);
}

export const sha256 = (s: string | Buffer): string => crypto.createHash('sha256').update(s).digest('hex');

const every8bit = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/** The inputs the issue names for byte-exact storage, plus the awkward edges of the wire rule. */
export const INPUTS: ReadonlyArray<{ name: string; data: Buffer }> = [
  { name: 'empty', data: Buffer.alloc(0) },
  { name: 'LF', data: Buffer.from('From: a@b\nSubject: lf\n\nbody line\n') },
  { name: 'CRLF', data: Buffer.from('From: a@b\r\nSubject: crlf\r\n\r\nbody line\r\n') },
  { name: 'mixed', data: Buffer.from('From: a@b\r\nSubject: mixed\n\r\nline\nline\r\n\n\r\n.\n..\r\n') },
  { name: 'no final newline', data: Buffer.from('Subject: x\n\nno newline at the end') },
  { name: 'empty body', data: Buffer.from('From: a@b\nSubject: empty body\n\n') },
  { name: 'headers only, no blank line', data: Buffer.from('Subject: only') },
  { name: 'lone CR and CR at end', data: Buffer.from('a\rb\r\r\nc\n\r') },
  { name: 'only newlines', data: Buffer.from('\n\n\r\n\n') },
  { name: 'NUL bytes', data: Buffer.from('Subject: nul\n\n\0\0a\0\nb\0') },
  { name: '8-bit', data: Buffer.concat([Buffer.from('Subject: =?utf-8?q?x?=\n\n'), every8bit, Buffer.from('\nÄÖÜ €\n'), every8bit]) },
  { name: 'random binary', data: crypto.randomBytes(200_000) },
];

/** A maildir path (and its parent) owned by the mail user, with cur/new/tmp when withSubdirs. */
export function mailUserMaildir(dir: string, withSubdirs = true): string {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (withSubdirs) for (const d of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(dir, d), { mode: 0o700 });
  if (isRoot) for (const d of ['', ...(withSubdirs ? ['cur', 'new', 'tmp'] : [])]) fs.chownSync(path.join(dir, d), MAILUSER.uid, MAILUSER.gid);
  return dir;
}

export interface PopcacheLine {
  name: string;
  octets: number;
  uidl: string;
}

/** popcache split into its lines; a line that does not have three fields fails the caller's checks. */
export function readPopcacheLines(maildir: string): PopcacheLine[] {
  const text = fs.readFileSync(path.join(maildir, 'popcache'), 'latin1');
  if (text !== '' && !text.endsWith('\n')) throw new Error('popcache does not end with a newline');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [name, octets, uidl, ...rest] = l.split(' ');
      if (rest.length > 0 || uidl === undefined) throw new Error(`popcache line with other than three fields: ${l}`);
      return { name, octets: Number(octets), uidl };
    });
}

/** The names in one subdirectory, sorted. */
export function ls(maildir: string, sub: 'cur' | 'new' | 'tmp'): string[] {
  return fs.readdirSync(path.join(maildir, sub)).sort();
}

const scratch: string[] = [];

/** A tmpdir() that removeScratchDirs() deletes: call that from the test file's after() hook (a 50 MB message per run adds up). */
export function scratchDir(): string {
  const d = tmpdir();
  scratch.push(d);
  return d;
}

export function removeScratchDirs(): void {
  for (const d of scratch.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}
