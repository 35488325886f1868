/**
 * popctl writes into users' maildirs. Files it created as root would be
 * unreadable (and popcache.lock unopenable) for the user's popmda and
 * wrkrpop, so as root it becomes the maildir's owner first.
 */
import fs from 'node:fs';
import path from 'node:path';
import { dropPrivileges, isRoot } from '@popd/shared/privdrop';
import { EX_NOINPUT, EX_NOPERM } from '@popd/shared/sysexits';
import { Failure } from './failure';

/** As root: switches to the uid:gid owning maildir (or its parent while it does not exist yet). */
export function becomeOwnerOf(maildir: string): void {
  if (!isRoot()) return;
  let st: fs.Stats;
  try {
    st = fs.statSync(maildir);
  } catch {
    try {
      st = fs.statSync(path.dirname(maildir));
    } catch {
      throw new Failure(EX_NOINPUT, `${maildir}: neither it nor its parent directory exists`);
    }
  }
  if (st.uid === 0 || st.gid === 0) throw new Failure(EX_NOPERM, `${maildir}: owned by root; create it owned by the mail user (usertab uid:gid) first`);
  dropPrivileges({ uid: st.uid, gid: st.gid, root: null });
}
