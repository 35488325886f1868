// identity: root, _pop3d, the mail user, the admin
/**
 * Privilege drops, checked after they happen: a drop that did not take
 * effect is fatal (the caller exits).
 */
import fs from 'node:fs';
import posix from 'posix';

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** uid and gid of a system user, or null when there is none. */
export function lookupUser(name: string): { uid: number; gid: number; dir: string } | null {
  try {
    const pw = posix.getpwnam(name);
    return { uid: pw.uid, gid: pw.gid, dir: pw.dir };
  } catch {
    return null;
  }
}

export interface DropTarget {
  uid: number;
  gid: number;
  /** Directory to chroot into, or null for none. */
  root: string | null;
  /** What root must turn out to be (checked by lstat before): a root swapped since is refused. */
  expect?: { dev: number; ino: number };
}

/** chroot, setgroups, setgid, setuid: in that order, then verified. */
export function dropPrivileges(t: DropTarget): void {
  if (t.uid === 0 || t.gid === 0) throw new Error('refusing to run as uid or gid 0');
  if (t.root !== null) {
    const before = t.expect ?? fs.statSync(t.root);
    posix.chroot(t.root);
    process.chdir('/');
    const after = fs.statSync('/');
    if (after.ino !== before.ino || after.dev !== before.dev) throw new Error(`chroot to ${t.root} did not take effect`);
  }
  process.setgroups!([t.gid]);
  process.setgid!(t.gid);
  process.setuid!(t.uid);
  const groups = process.getgroups!();
  const ok =
    process.getuid!() === t.uid &&
    process.geteuid!() === t.uid &&
    process.getgid!() === t.gid &&
    process.getegid!() === t.gid &&
    groups.every((g) => g === t.gid);
  if (!ok) throw new Error(`privilege drop to ${t.uid}:${t.gid} did not take effect`);
  // A dropped process must not be able to regain root.
  let regained = false;
  try {
    process.setuid!(0);
    regained = true;
  } catch {
    // expected: EPERM
  }
  if (regained) throw new Error('setuid(0) succeeded after the drop');
}
