/**
 * The start message from popd and the confinement it asks for. Checked like
 * anything else that crosses a process boundary, then: chroot into the
 * maildir and drop to uid:gid (popd is root), or, unprivileged, serve only
 * a mailbox of the uid this process already has.
 */
import { WorkerStart } from '@popd/shared/ipc';
import { dropPrivileges, isRoot } from '@popd/shared/privdrop';

const MAX_ID = 0xfffffffe;

const isId = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= MAX_ID;

/** A valid WorkerStart, or null. */
export function parseStart(x: unknown): WorkerStart | null {
  if (typeof x !== 'object' || x === null) return null;
  const m = x as Record<string, unknown>;
  const ok =
    m.t === 'start' &&
    typeof m.user === 'string' &&
    // Printable ASCII without spaces: the name goes into the greeting and the log.
    /^[\x21-\x7e]{1,255}$/.test(m.user) &&
    typeof m.maildir === 'string' &&
    m.maildir.startsWith('/') &&
    m.maildir.length <= 4096 &&
    !m.maildir.includes('\0') &&
    isId(m.uid) &&
    isId(m.gid) &&
    typeof m.drop === 'boolean' &&
    Number.isSafeInteger(m.idleTimeoutMs) &&
    (m.idleTimeoutMs as number) > 0 &&
    Number.isSafeInteger(m.verbosity) &&
    (m.verbosity as number) >= 0;
  if (!ok) return null;
  return {
    t: 'start',
    user: m.user as string,
    maildir: m.maildir as string,
    uid: m.uid as number,
    gid: m.gid as number,
    drop: m.drop as boolean,
    idleTimeoutMs: m.idleTimeoutMs as number,
    verbosity: m.verbosity as number,
  };
}

/** A start this process must not serve: answer is the client's line, reason the log's. */
export class Refusal extends Error {
  constructor(
    readonly answer: string,
    reason: string,
  ) {
    super(reason);
  }
}

const CONFIG = '-ERR [SYS/PERM] this server cannot serve that mailbox';

/** Confines the process as s asks; returns the maildir path to serve from now on. */
export function confine(s: WorkerStart): string {
  if (s.uid === 0 || s.gid === 0) throw new Refusal(CONFIG, `refusing uid or gid 0 for ${s.user}`);
  if (s.drop) {
    if (!isRoot()) throw new Refusal(CONFIG, 'asked to drop privileges but not running as root');
    try {
      dropPrivileges({ uid: s.uid, gid: s.gid, root: s.maildir });
    } catch (err) {
      throw new Refusal('-ERR [SYS/TEMP] mailbox unavailable, try again later', `confinement in ${s.maildir} as ${s.uid}:${s.gid} failed: ${(err as Error).message}`);
    }
    return '/';
  }
  const me = process.getuid!();
  if (s.uid !== me) throw new Refusal(CONFIG, `unprivileged mode: ${s.user} has uid ${s.uid}, this process runs as ${me}`);
  return s.maildir;
}
