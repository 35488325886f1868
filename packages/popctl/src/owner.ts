// identity: the admin
/**
 * popctl writes into users' maildirs. Files it created as root would be
 * unreadable (and popcache.lock unopenable) for the user's popmda and
 * wrkrpop, and root would follow whatever links a user planted; so as root
 * it becomes the maildir's owner first, having checked that no one else
 * could have put that owner there: the maildir is no symlink, and no
 * directory on its way is writable by another user (trustedpath.ts).
 * The owner comes from usertab when it is given (-u), else from the
 * maildir (or its parent while it does not exist yet).
 */
import fs from 'node:fs';
import path from 'node:path';
import { dropPrivileges, isRoot } from '@popd/shared/privdrop';
import { parseUsertab, UserInfo } from '@popd/shared/tables';
import { untrustedFor, UntrustedPath, walk } from '@popd/shared/trustedpath';
import { errnoCode } from '@popd/store/fsutil';
import { EX_CONFIG, EX_NOINPUT, EX_NOPERM, EX_NOUSER } from '@popd/shared/sysexits';
import { Failure } from './failure';

export interface OwnerOptions {
  /** usertab, to take the maildir's uid:gid from. */
  usertab?: string;
  /** as popd -e */
  subdir?: string;
}

/** The usertab line whose maildir is this one. */
function usertabEntry(maildir: string, usertab: string, subdir?: string): UserInfo {
  let text: string;
  try {
    text = fs.readFileSync(usertab, 'utf8');
  } catch (err) {
    throw new Failure(EX_CONFIG, `${usertab}: cannot read (${errnoCode(err)})`);
  }
  const { value, problems } = parseUsertab(text, usertab, subdir);
  const found = [...value.values()].filter((u) => path.resolve(u.maildir) === maildir);
  if (found.some((u) => u.uid !== found[0].uid || u.gid !== found[0].gid)) {
    throw new Failure(EX_CONFIG, `${maildir}: usertab gives it to users of different uid:gid (${found.map((u) => u.user).join(', ')})`);
  }
  if (found.length > 0) return found[0];
  // A malformed line may have been this maildir's.
  if (problems.length > 0) throw new Failure(EX_CONFIG, `${problems[0]} (and no valid line has the maildir ${maildir})`);
  throw new Failure(EX_NOUSER, `${maildir}: no user of ${usertab} has this maildir${subdir === undefined ? ' (is -e missing?)' : ''}`);
}

/**
 * Checks the maildir for the uid that is to write it and, as root, switches
 * to that uid:gid. Returns the path to use from now on (without symlinks:
 * the one that was checked). mustExist: reindex; import creates it.
 */
export function becomeOwnerOf(maildir: string, o: OwnerOptions, mustExist: boolean): string {
  const entry = o.usertab === undefined ? null : usertabEntry(maildir, o.usertab, o.subdir);
  if (!isRoot()) {
    if (entry !== null && entry.uid !== process.getuid!()) {
      throw new Failure(EX_NOPERM, `${maildir}: usertab gives it to uid ${entry.uid}; run popctl as that uid or as root`);
    }
    return maildir;
  }
  let w;
  try {
    w = walk(maildir);
  } catch (err) {
    if (!(err instanceof UntrustedPath)) throw err;
    throw new Failure(err.code === 'ELOOP' ? EX_NOPERM : EX_NOINPUT, `${err.message}${err.code === 'ELOOP' ? '; as root, popctl does not follow it: name the maildir itself' : ''}`);
  }
  if (w.last === null && mustExist) throw new Failure(EX_NOINPUT, `${maildir}: no such directory`);
  if (w.last !== null && !w.last.isDirectory()) throw new Failure(EX_NOINPUT, `${maildir}: not a directory`);
  const st = w.last ?? w.parent;
  const what = w.last === null ? `${path.dirname(maildir)} (where ${path.basename(maildir)} is to be made)` : maildir;
  if (entry !== null && st.uid !== entry.uid) throw new Failure(EX_NOPERM, `${what}: owned by uid ${st.uid}, usertab says ${entry.uid}`);
  const { uid, gid } = entry ?? st;
  if (uid === 0 || gid === 0) throw new Failure(EX_NOPERM, `${what}: owned by root; create it owned by the mail user (usertab uid:gid) first`);
  const why = untrustedFor(w, uid, gid);
  if (why !== null) throw new Failure(EX_NOPERM, `${maildir}: ${why}; as root, popctl uses no path that another user could change`);
  dropPrivileges({ uid, gid, root: null });
  return w.real;
}
