// identity: the mail user, the recipient, the admin
/**
 * popcache: one line per message, "uniquename SP octets SP uidl", where uidl
 * is the lowercase hex SHA-256 of the unique name (compatible with the C
 * original). It is a cache: the maildir is the truth.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MAX_POPCACHE_BYTES } from '@popd/shared/params';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { isSafeName, isSafeUniqueName } from './uniquename';
import { fsyncDir, NotRegular, openRegular } from './fsutil';
import { Pacer } from './pacer';

export const POPCACHE = 'popcache';

export interface CacheEntry {
  name: string;
  octets: number;
}

/** The UIDL of a unique name; popcache's third field holds it for the C original, popd derives it from the name. */
export function uidlOf(name: string): string {
  // One-shot crypto.hash: about twice as fast as createHash.
  return crypto.hash('sha256', name, 'hex');
}

function entryLine(e: CacheEntry): string {
  return `${e.name} ${e.octets} ${uidlOf(e.name)}\n`;
}

export interface ParsedCache {
  /** Wire octets by unique name, from the valid lines; a later line for the same name wins. */
  entries: Map<string, number>;
  /** Lines that were skipped (corrupt, truncated, duplicate). */
  bad: number;
}

/**
 * What the record (state.ts) keeps of popcache: its size and the CRC-32 of
 * those bytes. A later open that finds the same bytes at the start of the
 * file knows their lines without checking them again: 2.6 ms for 100,000
 * lines, against 37 ms to hash their names.
 */
export interface PopcacheDigest {
  size: number;
  crc: number;
}

/** Octets of a UIDL: 64 lowercase hex digits. Exported apart, so that this module's hot loops read a local constant, not exports.UIDL_LENGTH. */
const UIDL_LENGTH = 64;
export { UIDL_LENGTH };
const MAX_OCTETS_DIGITS = 15;
/** Longer than any valid line (a 255-octet name, 15 digits, a 64-digit uidl, two spaces): a longer one is corrupt. */
const MAX_LINE = 512;
const EMPTY = Buffer.alloc(0);
const SP = 0x20;

/** The octets field b[from, to): decimal, no sign, no leading zero, at most 15 digits; else -1. */
function octetsIn(b: Buffer, from: number, to: number): number {
  const n = to - from;
  if (n < 1 || n > MAX_OCTETS_DIGITS || (n > 1 && b[from] === 0x30)) return -1;
  let v = 0;
  for (let i = from; i < to; i++) {
    const c = b[i];
    if (c < 0x30 || c > 0x39) return -1;
    v = v * 10 + (c - 0x30);
  }
  return v;
}

/**
 * Cuts data read in pieces of any size into lines (without their "\n"), so
 * that a login never holds the whole file (15 MB for 100,000 messages) at
 * once. A line longer than any valid one is reported as null.
 */
class LineSplitter {
  /** The start of a line that the next piece continues. */
  private tail = EMPTY;
  /** Inside a line already too long to be valid: skipped up to its end. */
  private skipping = false;

  constructor(private readonly onLine: (b: Buffer | null, start: number, end: number) => void) {}

  push(piece: Buffer): void {
    let start = 0;
    if (this.tail.length > 0 || this.skipping) {
      // Only the line the last piece began is joined; the rest of the piece is read where it lies.
      const first = piece.indexOf(0x0a);
      if (first === -1) return this.keep(this.skipping ? EMPTY : Buffer.concat([this.tail, piece]));
      this.line(Buffer.concat([this.tail, piece.subarray(0, first + 1)]), 0, this.tail.length + first);
      start = first + 1;
    }
    for (let nl = piece.indexOf(0x0a, start); nl !== -1; start = nl + 1, nl = piece.indexOf(0x0a, start)) this.line(piece, start, nl);
    this.keep(piece.subarray(start));
  }

  private line(b: Buffer, start: number, end: number): void {
    if (this.skipping) this.onLine(null, 0, 0);
    else this.onLine(b, start, end);
    this.skipping = false;
  }

  /** Holds the start of an unfinished line, a copy (the caller may reuse piece's memory), unless it is already too long. */
  private keep(rest: Buffer): void {
    this.skipping ||= rest.length > MAX_LINE;
    this.tail = this.skipping ? EMPTY : Buffer.from(rest);
  }

  /** Whether the data ended inside a line (a truncated last line). */
  end(): boolean {
    const cut = this.skipping || this.tail.length > 0;
    this.tail = EMPTY;
    this.skipping = false;
    return cut;
  }
}

/** Whether b holds the characters of s (printable ASCII, as unique names and UIDLs are) from offset from on. */
function holds(b: Buffer, from: number, s: string): boolean {
  for (let i = 0; i < s.length; i++) if (b[from + i] !== s.charCodeAt(i)) return false;
  return true;
}

/**
 * Where the line b[start, end) has its two spaces, or null when it does not
 * have the form "name SP octets SP uidl"; whether the uidl is the name's is
 * for the caller to check.
 */
function fieldsOf(b: Buffer, start: number, end: number): { sp1: number; sp2: number; octets: number } | null {
  // The name has no space; the uidl is the last 64 characters.
  let sp1 = start;
  while (sp1 < end && b[sp1] !== SP) sp1++;
  const sp2 = end - UIDL_LENGTH - 1;
  if (sp1 <= start || sp2 <= sp1 || b[sp2] !== SP) return null;
  const octets = octetsIn(b, sp1 + 1, sp2);
  return octets < 0 ? null : { sp1, sp2, octets };
}

/** Parses popcache in pieces. */
export class PopcacheParser {
  private readonly entries = new Map<string, number>();
  private bad = 0;
  private readonly lines = new LineSplitter((b, start, end) => this.line(b, start, end));

  push(piece: Buffer): void {
    this.lines.push(piece);
  }

  /** The result; a last line without its "\n" is a truncated one, skipped. */
  end(): ParsedCache {
    if (this.lines.end()) this.bad++;
    return { entries: this.entries, bad: this.bad };
  }

  private line(b: Buffer | null, start: number, end: number): void {
    const f = b && fieldsOf(b, start, end);
    const name = f ? b!.toString('latin1', start, f.sp1) : '';
    // The uidl check also proves the field is 64 lowercase hex digits: the C original serves it as the UIDL.
    if (!f || !isSafeName(name) || name.includes(':') || !holds(b!, f.sp2 + 1, uidlOf(name))) {
      this.bad++;
      return;
    }
    if (this.entries.has(name)) this.bad++;
    this.entries.set(name, f.octets);
  }
}

export function parsePopcache(data: Buffer): ParsedCache {
  const p = new PopcacheParser();
  p.push(data);
  return p.end();
}

/** popcache's text in pieces of about 64 KB, so that a rewrite never builds the whole file in memory. */
export function* popcacheText(entries: Iterable<CacheEntry>): Generator<string> {
  let s = '';
  for (const e of entries) {
    s += entryLine(e);
    if (s.length >= 65536) {
      yield s;
      s = '';
    }
  }
  if (s !== '') yield s;
}


/**
 * Feeds popcache to read in pieces until it returns false, yielding between
 * pieces when the slice is used up. Returns the digest of what it read (of
 * the whole file unless read stopped it; its crc only with crc), false when
 * there is no popcache, and null when the file is not one to read: a
 * symlink, not a regular file, larger than any real one, or smaller than
 * minSize. Each piece is a new buffer with fresh (read may keep it), else
 * one buffer is read into again and again.
 */
async function readPieces(
  maildir: string,
  read: (piece: Buffer) => boolean,
  pacer: Pacer,
  opts: { minSize?: number; crc?: boolean; fresh?: boolean } = {},
): Promise<PopcacheDigest | false | null> {
  let fd: number;
  let st: fs.Stats;
  try {
    // popcache is the user's file: a symlink, FIFO or device there must not redirect or hang a login.
    ({ fd, st } = openRegular(path.join(maildir, POPCACHE)));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return false;
    if (code === 'ELOOP' || err instanceof NotRegular) return null;
    throw err;
  }
  try {
    if (st.size > MAX_POPCACHE_BYTES || st.size < (opts.minSize ?? 0)) return null;
    const PIECE = 256 * 1024;
    let piece = Buffer.allocUnsafe(Math.min(PIECE, st.size));
    const digest: PopcacheDigest = { size: 0, crc: 0 };
    // No further than the size seen: a file its owner keeps appending to must not keep a login reading.
    for (let left = st.size, n; left > 0 && (n = fs.readSync(fd, piece, 0, Math.min(piece.length, left), null)) > 0; left -= n) {
      digest.size += n;
      if (opts.crc ?? true) digest.crc = zlib.crc32(piece.subarray(0, n), digest.crc);
      if (!read(piece.subarray(0, n))) break;
      if (opts.fresh) piece = Buffer.allocUnsafe(Math.min(PIECE, left - n));
      if (pacer.due()) await pacer.yield();
    }
    return digest;
  } finally {
    fs.closeSync(fd);
  }
}

export async function readPopcache(maildir: string, pacer = new Pacer()): Promise<ParsedCache & { digest: PopcacheDigest | null }> {
  const p = new PopcacheParser();
  const found = await readPieces(
    maildir,
    (piece) => {
      p.push(piece);
      return true;
    },
    pacer,
  );
  if (found === null) return { entries: new Map(), bad: 1, digest: null };
  return { ...p.end(), digest: found || null };
}

export interface InOrder {
  /** Each line's octets. */
  octets: number[];
  /** Each line's uidl, UIDL_LENGTH octets each: checked against the name here, kept so that UIDL need not hash again. */
  uidls: Buffer;
  digest: PopcacheDigest;
}

/**
 * Reads popcache expecting exactly one valid line for each of these unique
 * names, in this order: the file as the last rewrite left it. Returns the
 * lines' octets and uidls, or null at the first difference, when the caller
 * builds an index of the file the long way (readPopcache). A login with
 * nothing new, or only what popmda appended, so needs no index of the file.
 */
export async function readPopcacheInOrder(maildir: string, expected: readonly { unique: string }[], pacer = new Pacer()): Promise<InOrder | null> {
  const octets: number[] = [];
  const uidls = Buffer.allocUnsafe(expected.length * UIDL_LENGTH);
  let same = true;
  const lines = new LineSplitter((b, start, end) => {
    if (!same) return;
    const e = expected[octets.length];
    // What fieldsOf finds, where the name is known: it has no space, so the first one follows it.
    const sp1 = e ? start + e.unique.length : -1;
    const sp2 = end - UIDL_LENGTH - 1;
    const n = b && sp1 > start && sp1 < sp2 && b[sp1] === SP && b[sp2] === SP ? octetsIn(b, sp1 + 1, sp2) : -1;
    same = n >= 0 && holds(b!, start, e.unique) && holds(b!, sp2 + 1, uidlOf(e.unique));
    if (!same) return;
    // A loop: Buffer.copy's checks cost more than its 64 octets (about 20 ms for 100,000 lines).
    for (let i = 0, to = octets.length * UIDL_LENGTH; i < UIDL_LENGTH; i++) uidls[to + i] = b![sp2 + 1 + i];
    octets.push(n);
  });
  const found = await readPieces(
    maildir,
    (piece) => {
      lines.push(piece);
      return same;
    },
    pacer,
  );
  return found && same && !lines.end() && octets.length === expected.length ? { octets, uidls, digest: found } : null;
}

/** The shortest valid line: a one-character name, one digit, two spaces, the uidl and "\n". */
const MIN_LINE = UIDL_LENGTH + 5;

/** 1 for the bytes of a uidl: lowercase hex. */
const HEX_BYTE = new Uint8Array(256).map((_, c) => ((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) ? 1 : 0));

/**
 * popcache lines where they lie in the pieces of the file that were read:
 * for each line, which piece, where its name starts and ends and where its
 * uidl starts, and its octets. Nothing is copied and no string made until
 * asked for (making the names and copying the uidls of a later open of
 * 100,000 messages took 30 ms): add indexes those 100,000 lines in about
 * 15 ms, 10 of them the checks of each name and uidl (a micro-benchmark).
 */
export class LineIndex {
  readonly octets: Float64Array;
  private readonly piece: Uint32Array;
  private readonly start: Uint32Array;
  private readonly nameEnd: Uint32Array;
  private readonly uidlAt: Uint32Array;
  private n = 0;

  constructor(
    /** The pieces the lines lie in (kept: the file may change after the read). */
    private readonly pieces: Buffer[],
    capacity: number,
  ) {
    this.octets = new Float64Array(capacity);
    this.piece = new Uint32Array(capacity);
    this.start = new Uint32Array(capacity);
    this.nameEnd = new Uint32Array(capacity);
    this.uidlAt = new Uint32Array(capacity);
  }

  get length(): number {
    return this.n;
  }

  /**
   * Indexes the line b[start, end) (without its "\n") of pieces[p]: "name SP
   * octets SP uidl" with a safe unique name, octets of 1 to 15 digits and a
   * uidl of lowercase hex. False when it is not so, or when the index is
   * full. That the uidl is the name's hash is not checked again (the record
   * says this program wrote or checked the line), but the record lies next
   * to popcache, writable by whoever can write popcache: a name that could
   * leave the maildir, or a uidl that could break a line of the protocol,
   * is never indexed.
   */
  add(p: number, b: Buffer, start: number, end: number): boolean {
    const sp2 = end - UIDL_LENGTH - 1;
    if (this.n === this.octets.length || sp2 <= start + 2 || b[sp2] !== SP) return false;
    // Backwards over the digits: the name is the longer field, and has no space.
    let sp1 = sp2 - 1;
    let v = 0;
    for (let unit = 1, c = b[sp1]; c >= 0x30 && c <= 0x39; unit *= 10, c = b[--sp1]) v += (c - 0x30) * unit;
    const digits = sp2 - 1 - sp1;
    if (digits < 1 || digits > MAX_OCTETS_DIGITS || sp1 <= start || b[sp1] !== SP) return false;
    if (!isSafeUniqueName(b, start, sp1)) return false;
    for (let k = sp2 + 1; k < end; k++) if (HEX_BYTE[b[k]] === 0) return false;
    const i = this.n++;
    this.octets[i] = v;
    this.piece[i] = p;
    this.start[i] = start;
    this.nameEnd[i] = sp1;
    this.uidlAt[i] = sp2 + 1;
    return true;
  }

  name(i: number): string {
    return this.pieces[this.piece[i]].toString('latin1', this.start[i], this.nameEnd[i]);
  }

  uidl(i: number): string {
    return this.pieces[this.piece[i]].toString('latin1', this.uidlAt[i], this.uidlAt[i] + UIDL_LENGTH);
  }

  /** Whether line i names s. */
  isName(i: number, s: string): boolean {
    const start = this.start[i];
    // A string made and compared natively: faster than comparing character by character in place.
    return this.nameEnd[i] - start === s.length && this.pieces[this.piece[i]].toString('latin1', start, this.nameEnd[i]) === s;
  }

  /** Copies the uidl of line i into buf at at; returns where it ends. */
  copyUidl(i: number, buf: Buffer, at: number): number {
    const b = this.pieces[this.piece[i]];
    // A loop: Buffer.copy's checks cost more than its 64 octets.
    for (let k = 0, from = this.uidlAt[i]; k < UIDL_LENGTH; k++) buf[at + k] = b[from + k];
    return at + UIDL_LENGTH;
  }
}

export interface RecordedLines {
  /** The recorded lines, in order. */
  lines: LineIndex;
  /** The lines after them (appended since, by popmda), each checked; in file order unless one name came twice (then bad > 0). */
  tail: ParsedCache;
  /** The digest of the whole file as read. */
  digest: PopcacheDigest;
}

/**
 * Reads popcache when a record (state.ts) says that its first recorded.size
 * bytes, with that CRC-32, are `count` lines this process wrote or checked:
 * those are indexed in place, without checking their names and uidls
 * again; the lines after them (what popmda appended since) with every
 * check. Null when the file does not start with those bytes (rewritten,
 * edited, shorter, gone), when it is not one to read, or when a recorded
 * line does not have the form of one.
 */
export async function readRecordedLines(maildir: string, count: number, recorded: PopcacheDigest, pacer = new Pacer()): Promise<RecordedLines | null> {
  if (count > recorded.size / MIN_LINE || recorded.size > MAX_POPCACHE_BYTES) return null;
  const pieces: Buffer[] = [];
  const lines = new LineIndex(pieces, count);
  const rest = new PopcacheParser();
  let ok = true;
  /** Indexes the recorded lines in place; the pieces they lie in are kept (a line joined across two is a piece of its own). */
  const splitter = new LineSplitter((b, start, end) => {
    if (b === null) {
      ok = false;
      return;
    }
    if (b !== pieces[pieces.length - 1]) pieces.push(b);
    ok &&= lines.add(pieces.length - 1, b, start, end);
  });
  let at = 0;
  // Of the recorded bytes, then of the whole file.
  let crc = 0;
  const found = await readPieces(
    maildir,
    (piece) => {
      const cut = Math.max(0, Math.min(piece.length, recorded.size - at));
      crc = zlib.crc32(piece.subarray(0, cut), crc);
      if (cut > 0 && ok) splitter.push(piece.subarray(0, cut));
      at += piece.length;
      if (cut > 0 && at >= recorded.size) ok &&= crc === recorded.crc && !splitter.end() && lines.length === count;
      if (ok && cut < piece.length) {
        rest.push(piece.subarray(cut));
        crc = zlib.crc32(piece.subarray(cut), crc);
      }
      return ok;
    },
    pacer,
    { minSize: recorded.size, crc: false, fresh: true },
  );
  if (!found || !ok || found.size < recorded.size) return null;
  return { lines, tail: rest.end(), digest: { size: found.size, crc } };
}

/**
 * What readPopcacheInOrder finds, from lines a record vouches for: no name
 * is hashed again (37 ms for 100,000). Null unless popcache's lines are
 * exactly these names, in order.
 */
export async function recordedInOrder(recorded: RecordedLines, expected: readonly { unique: string }[], pacer = new Pacer()): Promise<InOrder | null> {
  const { lines, tail } = recorded;
  if (tail.bad > 0 || expected.length !== lines.length + tail.entries.size) return null;
  const octets: number[] = [];
  const uidls = Buffer.allocUnsafe(expected.length * UIDL_LENGTH);
  for (let i = 0; i < lines.length; i++) {
    if (pacer.tick()) await pacer.yield();
    if (!lines.isName(i, expected[i].unique)) return null;
    octets.push(lines.octets[i]);
    lines.copyUidl(i, uidls, i * UIDL_LENGTH);
  }
  let i = lines.length;
  for (const [name, n] of tail.entries) {
    if (expected[i].unique !== name) return null;
    octets.push(n);
    uidls.write(uidlOf(name), i * UIDL_LENGTH, 'latin1');
    i++;
  }
  return { octets, uidls, digest: recorded.digest };
}

// O_NOFOLLOW and O_NONBLOCK: a symlink or FIFO planted in the maildir must neither redirect a write nor hang it.
const { O_WRONLY, O_CREAT, O_TRUNC, O_APPEND, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

const fsync = promisify(fs.fsync);

/**
 * Replaces popcache atomically: temp file, fsync, rename, fsync the
 * directory. The pieces are written between yields, and the file's fsync
 * (15 MB for 100,000 messages) runs on the thread pool, off the event loop.
 * Returns the digest of what it wrote.
 */
export async function writePopcacheAtomic(maildir: string, entries: Iterable<CacheEntry>, pacer = new Pacer()): Promise<PopcacheDigest> {
  const tmp = path.join(maildir, `${POPCACHE}.tmp.${process.pid}`);
  const fd = fs.openSync(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK, 0o600);
  const digest: PopcacheDigest = { size: 0, crc: 0 };
  try {
    for (const text of popcacheText(entries)) {
      const b = Buffer.from(text, 'latin1');
      for (let off = 0; off < b.length; ) off += fs.writeSync(fd, b, off);
      digest.size += b.length;
      digest.crc = zlib.crc32(b, digest.crc);
      if (pacer.due()) await pacer.yield();
    }
    await fsync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, path.join(maildir, POPCACHE));
  fsyncDir(maildir);
  return digest;
}

/**
 * Appends entries (the caller holds the popcache lock) and returns the bytes
 * appended. A failed write is cut back off, so that a full disk leaves no
 * partial line to merge with the next one.
 */
export function appendPopcache(maildir: string, ...entries: CacheEntry[]): Buffer {
  const fd = fs.openSync(path.join(maildir, POPCACHE), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK, 0o600);
  try {
    const before = fs.fstatSync(fd).size;
    try {
      const line = Buffer.from(entries.map(entryLine).join(''), 'latin1');
      const n = fs.writeSync(fd, line);
      if (n !== line.length) throw Object.assign(new Error('popcache: short write'), { code: 'EIO' });
      fs.fsyncSync(fd);
      return line;
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
