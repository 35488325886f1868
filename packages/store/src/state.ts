// identity: the mail user, the recipient, the admin
/**
 * popcache.state, the record beside popcache that lets a later open skip
 * reading cur/ (docs/architecture.md, "Files" and "Maildir"): what the last
 * listing found, and the stamps of cur/ and new/ it was taken under.
 *
 * A directory's stamp (device, inode, mtime and ctime in nanoseconds)
 * changes with every entry created, removed or renamed in it, so a listing
 * stays true while the stamp is the one recorded, with one exception: two
 * changes within one tick of the filesystem's clock (a few milliseconds; a
 * second or two on some filesystems) leave the same stamp. So a directory
 * is recorded as settled only when its stamp is older than the listing by
 * STATE_SETTLE_MS (Dovecot's rule for its maildir index): any change after the
 * listing started then shows as a new stamp. The time the listing started
 * is read from the filesystem's own clock (the mtime of the record's temp
 * file, created first), so that a server whose clock differs from ours
 * cannot make an old stamp look recent or a recent one old.
 *
 * The file is the mail user's, and read as hostile: opened O_NOFOLLOW |
 * O_NONBLOCK, a regular file of at most MAX_STATE_BYTES, every line checked;
 * anything else means no record, and the open reads both directories.
 *
 *   popd-state 1
 *   cur DEV INO MTIME_NS CTIME_NS settled|unsettled
 *   new DEV INO MTIME_NS CTIME_NS settled|unsettled
 *   popcache SIZE CRC32
 *   COUNT cur|new [SUFFIX]      (runs, one line for each)
 *   end
 *
 * The runs follow popcache's first lines in order: COUNT messages in that
 * directory, each named its unique name followed by SUFFIX (":2,S"; none in
 * new/ as delivered). popcache SIZE and CRC32 are those of popcache's bytes
 * when the record was written: popmda appends lines after them. Those lines
 * were written or checked by the open that wrote the record, so that an
 * open that lists the directories again (cur/ changed or not settled) still
 * need not check them again while popcache starts with those bytes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { MAX_STATE_BYTES, STATE_SETTLE_MS } from '@popd/shared/params';
import { openRegular } from './fsutil';
import { POPCACHE, PopcacheDigest } from './popcache';

export const STATE = `${POPCACHE}.state`;
const MAGIC = 'popd-state 1';

export type Subdir = 'cur' | 'new';

/** What changes when a directory's entries change. */
export interface Stamp {
  dev: bigint;
  ino: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** COUNT messages in one directory, each file named its unique name and suffix. */
export interface Run {
  count: number;
  dir: Subdir;
  suffix: string;
}

export interface State {
  cur: Stamp;
  /** Whether cur/'s listing can be trusted while its stamp is the same. */
  curSettled: boolean;
  new: Stamp;
  newSettled: boolean;
  popcache: PopcacheDigest;
  runs: Run[];
  /** The messages the runs hold. */
  count: number;
}

function stampOf(st: fs.BigIntStats): Stamp {
  return { dev: st.dev, ino: st.ino, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

export function stampDir(maildir: string, dir: Subdir): Stamp {
  return stampOf(fs.statSync(path.join(maildir, dir), { bigint: true }));
}

export function sameStamp(a: Stamp, b: Stamp): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/** Whether a directory stamped so before a listing that started at sinceNs (the filesystem's clock) was last changed settleMs before it. */
export function isSettled(s: Stamp, sinceNs: bigint, settleMs: number = STATE_SETTLE_MS): boolean {
  const limit = sinceNs - BigInt(settleMs) * 1_000_000n;
  return s.mtimeNs < limit && s.ctimeNs < limit;
}

/** The suffix of a file name after its unique name: nothing, or ":" and printable ASCII without "/". */
const SUFFIX = /^(?::[\x21-\x2e\x30-\x7e]{0,254})?$/;
const NUMBER = /^(?:0|[1-9][0-9]{0,19})$/;
const U64_MAX = (1n << 64n) - 1n;

function u64(s: string | undefined): bigint | null {
  if (s === undefined || !NUMBER.test(s)) return null;
  const v = BigInt(s);
  return v <= U64_MAX ? v : null;
}

function stampFrom(f: string[]): Stamp | null {
  const [dev, ino, mtimeNs, ctimeNs] = f.map(u64);
  return dev !== null && ino !== null && mtimeNs !== null && ctimeNs !== null ? { dev, ino, mtimeNs, ctimeNs } : null;
}

/** The record's text, or null for any line that is not exactly as formatState writes it. */
export function parseState(text: string): State | null {
  const lines = text.split('\n');
  if (lines.length < 5 || lines[0] !== MAGIC || lines[lines.length - 2] !== 'end' || lines[lines.length - 1] !== '') return null;
  const cur = /^cur (\S+) (\S+) (\S+) (\S+) (settled|unsettled)$/.exec(lines[1]);
  const nw = /^new (\S+) (\S+) (\S+) (\S+) (settled|unsettled)$/.exec(lines[2]);
  const pc = /^popcache (\S+) (\S+)$/.exec(lines[3]);
  const curStamp = cur && stampFrom(cur.slice(1, 5));
  const newStamp = nw && stampFrom(nw.slice(1, 5));
  const size = u64(pc?.[1]);
  const crc = u64(pc?.[2]);
  if (!curStamp || !newStamp || size === null || crc === null || size > BigInt(Number.MAX_SAFE_INTEGER) || crc > 0xffffffffn) return null;
  const runs: Run[] = [];
  let count = 0;
  for (let i = 4; i < lines.length - 2; i++) {
    const r = /^([1-9][0-9]{0,8}) (cur|new)(?: (\S+))?$/.exec(lines[i]);
    const suffix = r?.[3] ?? '';
    if (!r || !SUFFIX.test(suffix)) return null;
    const run: Run = { count: Number(r[1]), dir: r[2] as Subdir, suffix };
    count += run.count;
    runs.push(run);
  }
  return { cur: curStamp, curSettled: cur![5] === 'settled', new: newStamp, newSettled: nw![5] === 'settled', popcache: { size: Number(size), crc: Number(crc) }, runs, count };
}

export function formatState(s: Omit<State, 'count'>): string {
  const stamp = (t: Stamp): string => `${t.dev} ${t.ino} ${t.mtimeNs} ${t.ctimeNs}`;
  const settled = (b: boolean): string => (b ? 'settled' : 'unsettled');
  const runs = s.runs.map((r) => `${r.count} ${r.dir}${r.suffix === '' ? '' : ` ${r.suffix}`}\n`).join('');
  return (
    `${MAGIC}\ncur ${stamp(s.cur)} ${settled(s.curSettled)}\nnew ${stamp(s.new)} ${settled(s.newSettled)}\n` +
    `popcache ${s.popcache.size} ${s.popcache.crc}\n${runs}end\n`
  );
}

/** The runs of a listing, message by message (inside a loop that yields): each message's directory and file name after its unique name. */
export class RunsBuilder {
  readonly runs: Run[] = [];
  private last: Run | null = null;

  add(m: { unique: string; dir: Subdir; file: string }): void {
    const last = this.last;
    if (last !== null && last.dir === m.dir && hasSuffix(m.file, m.unique.length, last.suffix)) last.count++;
    else this.runs.push((this.last = { count: 1, dir: m.dir, suffix: m.file.slice(m.unique.length) }));
  }
}

/** The runs of a listing in order. */
export function runsOf(messages: Iterable<{ unique: string; dir: Subdir; file: string }>): Run[] {
  const b = new RunsBuilder();
  for (const m of messages) b.add(m);
  return b.runs;
}

/** Whether file, after its first at characters, is suffix: compared in place, as a string cut from each of 100,000 names cost 19 ms. */
function hasSuffix(file: string, at: number, suffix: string): boolean {
  if (file.length !== at + suffix.length) return false;
  for (let i = 0; i < suffix.length; i++) if (file.charCodeAt(at + i) !== suffix.charCodeAt(i)) return false;
  return true;
}

/** The record of maildir, or null when there is none or it is not one to trust (see above). */
export function readState(maildir: string): State | null {
  let fd: number;
  let st: fs.Stats;
  try {
    ({ fd, st } = openRegular(path.join(maildir, STATE)));
  } catch {
    // Missing, a symlink (ELOOP), not a regular file, unreadable: the open reads the directories.
    return null;
  }
  try {
    if (st.size > MAX_STATE_BYTES) return null;
    const b = Buffer.allocUnsafe(st.size + 1);
    let n = 0;
    for (let got; n < b.length && (got = fs.readSync(fd, b, n, b.length - n, null)) > 0; ) n += got;
    // Grown since the fstat (not written by popd, which renames a finished file into place): not a record.
    if (n > st.size) return null;
    return parseState(b.toString('latin1', 0, n));
  } catch {
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

/** An error of the filesystem (it has an errno code), not of the program. */
const isFsError = (err: unknown): boolean => typeof (err as NodeJS.ErrnoException)?.code === 'string';

/**
 * A record being made: its temp file is created before the directories are
 * stamped and listed, and its mtime is when the listing started by the
 * filesystem's clock. commit() writes the record and renames it into place;
 * drop() removes the temp file and any older record; abandon() only the
 * temp file (an open that failed). A record that cannot be written costs the
 * next open a listing, nothing else: these never throw an errno error.
 */
export class StateWriter {
  private constructor(
    private readonly maildir: string,
    private readonly tmp: string,
    private fd: number | null,
    /** When the listing started, by the filesystem's clock. */
    readonly sinceNs: bigint,
  ) {}

  /** Null when the temp file cannot be made (a full disk): no record this time. */
  static begin(maildir: string): StateWriter | null {
    const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = fs.constants;
    // A name the stale-file sweep of the open knows (popcache.tmp.*); removed first so that its mtime is the time of creation.
    const tmp = path.join(maildir, `${POPCACHE}.tmp.${process.pid}.state`);
    let fd: number | null = null;
    try {
      fs.rmSync(tmp, { force: true });
      fd = fs.openSync(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK, 0o600);
      return new StateWriter(maildir, tmp, fd, fs.fstatSync(fd, { bigint: true }).mtimeNs);
    } catch (err) {
      if (fd !== null) {
        fs.closeSync(fd);
        fs.rmSync(tmp, { force: true });
      }
      if (isFsError(err)) return null;
      throw err;
    }
  }

  /**
   * Replaces the record. No fsync: a record lost in a crash leaves the one
   * before it, which is only trusted while every stamp it holds is still
   * the directories' and its popcache bytes are still there.
   */
  commit(s: Omit<State, 'count'>): void {
    const text = Buffer.from(formatState(s), 'latin1');
    if (text.length > MAX_STATE_BYTES) return this.drop();
    try {
      for (let off = 0; off < text.length; ) off += fs.writeSync(this.fd!, text, off);
      this.close();
      fs.renameSync(this.tmp, path.join(this.maildir, STATE));
    } catch (err) {
      if (!isFsError(err)) throw err;
      this.drop();
    }
  }

  /** No record: the next open reads both directories. */
  drop(): void {
    this.abandon();
    try {
      removeState(this.maildir);
    } catch (err) {
      // Left in place, it is still checked against every stamp and popcache's bytes.
      if (!isFsError(err)) throw err;
    }
  }

  /** Removes the temp file if commit() or drop() has not. */
  abandon(): void {
    if (this.fd === null) return;
    fs.closeSync(this.fd);
    this.fd = null;
    try {
      fs.unlinkSync(this.tmp);
    } catch (err) {
      // The sweep of stale popcache.tmp.* files removes what is left.
      if (!isFsError(err)) throw err;
    }
  }

  private close(): void {
    if (this.fd === null) return;
    fs.closeSync(this.fd);
    this.fd = null;
  }
}

/** Removes the record (popctl reindex, a listing not settled): the next open reads both directories. */
export function removeState(maildir: string): void {
  try {
    fs.unlinkSync(path.join(maildir, STATE));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
