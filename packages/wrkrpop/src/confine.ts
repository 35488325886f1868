// identity: root until confined, then the mail user
/**
 * Runs as root until confine() returns (docs/architecture.md,
 * "Confinement"): popd's messages to a worker, checked like anything that
 * crosses a process boundary, and the confinement the first one asks for:
 * check the root directory with lstat, chroot into it and drop to uid:gid
 * (popd is root), or, unprivileged, serve only maildirs of the uid this
 * process already has.
 */
import fs from 'node:fs';
import path from 'node:path';
import { int, MAX_ID, PROTOCOL, Retire, str, WorkerConfine, WorkerSession } from '@popd/shared/ipc';
import { dropPrivileges, isRoot } from '@popd/shared/privdrop';
import { untrustedFor, walk } from '@popd/shared/trustedpath';

const MAX_UNIX_ID = 0xfffffffe;

/** A valid WorkerConfine, or null. */
export function parseConfine(m: Record<string, unknown>): WorkerConfine | null {
  const ok =
    m.t === 'confine' &&
    m.v === PROTOCOL &&
    int(m.uid, 0, MAX_UNIX_ID) &&
    int(m.gid, 0, MAX_UNIX_ID) &&
    str(m.root, 4096) &&
    m.root.startsWith('/') &&
    !m.root.includes('\0') &&
    typeof m.drop === 'boolean' &&
    int(m.idleTimeoutMs, 1, Number.MAX_SAFE_INTEGER) &&
    int(m.verbosity, 0, 100);
  if (!ok) return null;
  return { t: 'confine', v: PROTOCOL, uid: m.uid as number, gid: m.gid as number, root: m.root as string, drop: m.drop as boolean, idleTimeoutMs: m.idleTimeoutMs as number, verbosity: m.verbosity as number };
}

/** A valid WorkerSession, or null. */
export function parseSession(m: Record<string, unknown>): WorkerSession | null {
  const ok =
    m.t === 'session' &&
    str(m.sid, MAX_ID) &&
    str(m.user, 255) &&
    // Printable ASCII without spaces: the name goes into the greeting and the log.
    /^[\x21-\x7e]{1,255}$/.test(m.user) &&
    str(m.maildir, 4096) &&
    !m.maildir.includes('\0') &&
    !path.isAbsolute(m.maildir) &&
    !m.maildir.split('/').includes('..');
  return ok ? { t: 'session', sid: m.sid as string, user: m.user as string, maildir: m.maildir as string } : null;
}

export const isRetire = (m: Record<string, unknown>): m is Record<string, unknown> & Retire => m.t === 'retire';

/** A confinement this process must not serve under: answer is each client's line, reason the log's. */
export class Refusal extends Error {
  constructor(
    readonly answer: string,
    reason: string,
  ) {
    super(reason);
  }
}

const CONFIG = '-ERR [SYS/PERM] this server cannot serve that mailbox';
export const UNAVAILABLE = '-ERR [SYS/TEMP] mailbox unavailable, try again later';

/**
 * dir, walked with lstat: a directory that nobody but root and uid:gid could
 * have swapped, owned by uid when ownDir is set. Returns its identity, or
 * throws an Error that names the component and the reason.
 */
export function trustedDir(dir: string, uid: number, gid: number, ownDir: boolean): { dev: number; ino: number } {
  let last: fs.Stats | null;
  // The root of a chroot was walked from the real / before the chroot.
  if (path.resolve(dir) === '/') last = fs.lstatSync('/');
  else {
    const w = walk(dir);
    const why = untrustedFor(w, uid, gid);
    if (why !== null) throw new Error(why);
    last = w.last;
  }
  if (last === null) throw new Error(`${dir}: does not exist`);
  if (!last.isDirectory()) throw new Error(`${dir}: not a directory`);
  if (ownDir && last.uid !== uid) throw new Error(`${dir} belongs to uid ${last.uid}, not ${uid}`);
  return { dev: last.dev, ino: last.ino };
}

/** Confines the process as c asks; returns the root as this process sees it from now on ("/" once chrooted). */
export function confine(c: WorkerConfine): string {
  if (c.uid === 0 || c.gid === 0) throw new Refusal(CONFIG, `refusing uid or gid 0 (${c.uid}:${c.gid})`);
  if (c.drop) {
    if (!isRoot()) throw new Refusal(CONFIG, 'asked to drop privileges but not running as root');
    try {
      // lstat, as root, before the chroot follows anything: a root that a stranger could swap is refused.
      const expect = trustedDir(c.root, c.uid, c.gid, false);
      dropPrivileges({ uid: c.uid, gid: c.gid, root: c.root, expect });
    } catch (err) {
      throw new Refusal(UNAVAILABLE, `confinement in ${c.root} as ${c.uid}:${c.gid} failed: ${(err as Error).message}`);
    }
    return '/';
  }
  const me = process.getuid!();
  if (c.uid !== me) throw new Refusal(CONFIG, `unprivileged mode: uid ${c.uid} asked, this process runs as ${me}`);
  return c.root;
}
