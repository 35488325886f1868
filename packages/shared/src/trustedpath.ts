// identity: the mail user, the admin
/**
 * Paths that a root process may use on behalf of one uid: no component on
 * the way is one that another user could replace. Whoever may write a
 * directory can rename its entries and put a symlink or another directory in
 * their place (in a sticky directory only the entries they own), so a path
 * is trusted for uid:gid when every directory on it can be written by root,
 * uid and gid only, and no entry on it belongs to someone else in a sticky
 * directory that others may write (/tmp). Symlinks on the way are followed
 * (they are entries like any other: an admin's /var/mail -> spool/mail is
 * fine); the last component must not be one.
 *
 * walk() only looks; untrustedFor() judges the result once the uid is known
 * (for popctl, from usertab or the owner of the last component). Between the
 * check and the use only root and that uid can change the path, so a process
 * that switches to the uid before it uses the path gains that uid nothing.
 */
import fs from 'node:fs';
import path from 'node:path';

export class UntrustedPath extends Error {
  constructor(
    message: string,
    /** ENOENT or ENOTDIR on the way; ELOOP: the last component is a link, or too many links; EISDIR: the path is /. */
    readonly code: string,
  ) {
    super(message);
  }
}

export interface Step {
  /** The entry's path, through directories without symlinks (the entry itself may be one). */
  entry: string;
  st: fs.Stats;
  /** The directory holding it. */
  parent: fs.Stats;
}

export interface Walked {
  /** The path without symlinks. */
  real: string;
  /** lstat of the last component, null when it does not exist (its parent does). */
  last: fs.Stats | null;
  /** The last component's directory. */
  parent: fs.Stats;
  /** Every entry looked up on the way (links and directories, not the last component). */
  steps: Step[];
}

/** As the kernel counts (Linux MAXSYMLINKS). */
const MAX_LINKS = 40;

const lstat = (p: string): fs.Stats | null => fs.lstatSync(p, { throwIfNoEntry: false }) ?? null;

/**
 * Resolves path.resolve(p) component by component with lstat, as the kernel
 * would, recording every entry passed; the last component is not followed.
 */
export function walk(p: string): Walked {
  const todo = path.resolve(p).split('/').filter((c) => c !== '');
  const name = todo.pop();
  if (name === undefined) throw new UntrustedPath('/: not usable', 'EISDIR');
  let cur = '/';
  let curSt = fs.lstatSync(cur);
  const steps: Step[] = [];
  let links = 0;
  for (let c = todo.shift(); c !== undefined; c = todo.shift()) {
    if (c === '.') continue;
    if (c === '..') {
      // cur has no symlinks: its parent is its dirname, already passed.
      cur = path.dirname(cur);
      curSt = fs.lstatSync(cur);
      continue;
    }
    const next = path.join(cur, c);
    const st = lstat(next);
    if (st === null) throw new UntrustedPath(`${p}: ${next} does not exist`, 'ENOENT');
    steps.push({ entry: next, st, parent: curSt });
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) throw new UntrustedPath(`${p}: too many symbolic links`, 'ELOOP');
      const target = fs.readlinkSync(next);
      todo.unshift(...target.split('/').filter((x) => x !== ''));
      if (path.isAbsolute(target)) [cur, curSt] = ['/', fs.lstatSync('/')];
      continue;
    }
    if (!st.isDirectory()) throw new UntrustedPath(`${p}: ${next} is not a directory`, 'ENOTDIR');
    [cur, curSt] = [next, st];
  }
  const real = path.join(cur, name);
  const last = lstat(real);
  if (last?.isSymbolicLink()) throw new UntrustedPath(`${p}: is a symbolic link`, 'ELOOP');
  return { real, last, parent: curSt, steps };
}

/** Whether someone other than root and uid:gid could replace an entry owned by entryUid (-1: none yet) in directory d. */
function replaceable(d: fs.Stats, entryUid: number, uid: number, gid: number): boolean {
  if (d.uid !== 0 && d.uid !== uid) return true;
  const groupWrites = (d.mode & 0o020) !== 0 && d.gid !== 0 && d.gid !== gid;
  if (!groupWrites && (d.mode & 0o002) === 0) return false;
  // Others may write it: only the sticky bit keeps them from renaming what they do not own.
  return (d.mode & 0o1000) === 0 || (entryUid !== 0 && entryUid !== uid);
}

const describe = (dir: string, d: fs.Stats): string => `${dir} (owner ${d.uid}, group ${d.gid}, mode ${(d.mode & 0o7777).toString(8).padStart(4, '0')})`;

/**
 * Why the walked path is not trusted for uid:gid, or null when it is. The
 * last component, when it exists, is judged as a directory too: its own
 * entries (a maildir's cur/, new/, popcache) must be no one else's to
 * replace either.
 */
export function untrustedFor(w: Walked, uid: number, gid: number): string | null {
  for (const s of w.steps) {
    if (replaceable(s.parent, s.st.uid, uid, gid)) return `${describe(path.dirname(s.entry), s.parent)} lets another user than uid ${uid} replace ${s.entry}`;
  }
  if (replaceable(w.parent, w.last?.uid ?? -1, uid, gid)) return `${describe(path.dirname(w.real), w.parent)} lets another user than uid ${uid} replace ${w.real}`;
  if (w.last !== null && replaceable(w.last, -1, uid, gid)) return `${describe(w.real, w.last)} lets another user than uid ${uid} change what is in it`;
  return null;
}
