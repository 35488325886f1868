/**
 * Whether a directory path could have been swapped by someone other than
 * root and the user who owns it (docs/architecture.md, "Confinement"):
 * wrkrpop checks its root as root before chroot, and each maildir inside
 * it as the mail user. Nothing here follows a link.
 */
import fs from 'node:fs';
import path from 'node:path';

const STICKY = 0o1000;

export interface DirId {
  dev: number;
  ino: number;
}

/**
 * Walks dir from `from` (trusted: "/" or a root already checked) with
 * lstat: every component must be a directory, not a link, owned by root
 * or uid, in a parent nobody else may write to (a sticky /tmp is fine:
 * there only the owner renames an entry); dir itself must belong to uid
 * when ownDir is set. Returns dir's identity, or throws an Error that
 * names the component and the reason.
 */
export function checkDir(dir: string, uid: number, opts: { from?: string; ownDir?: boolean } = {}): DirId {
  const from = opts.from ?? '/';
  const rel = path.relative(from, dir);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new Error(`${dir} is outside ${from}`);
  let parent = fs.lstatSync(from);
  let at = from;
  const parts = rel === '' ? [] : rel.split(path.sep);
  for (const part of parts) {
    const writable = (parent.mode & 0o022) !== 0 && (parent.mode & STICKY) === 0;
    if (writable) throw new Error(`${at} is writable by group or others`);
    at = path.join(at, part);
    const st = fs.lstatSync(at);
    if (st.isSymbolicLink()) throw new Error(`${at} is a symbolic link`);
    if (!st.isDirectory()) throw new Error(`${at} is not a directory`);
    if (st.uid !== 0 && st.uid !== uid) throw new Error(`${at} belongs to uid ${st.uid}`);
    parent = st;
  }
  if (opts.ownDir === true && parent.uid !== uid) throw new Error(`${dir} belongs to uid ${parent.uid}, not ${uid}`);
  return { dev: parent.dev, ino: parent.ino };
}
