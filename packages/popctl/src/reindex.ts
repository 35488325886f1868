// identity: the admin
/** popctl reindex: rebuild popcache for a maildir filled by another delivery agent. */
import fs from 'node:fs';
import path from 'node:path';
import { MAILDROP_LOCK, tryLock } from '@popd/store/lock';
import { rebuildPopcache, RebuildResult } from '@popd/store/maildir';
import { EX_NOINPUT, EX_TEMPFAIL } from '@popd/shared/sysexits';
import { becomeOwnerOf, OwnerOptions } from './owner';
import { Failure } from './failure';

export async function reindex(target: string, o: OwnerOptions): Promise<RebuildResult> {
  const maildir = becomeOwnerOf(target, o, true);
  for (const d of ['cur', 'new']) {
    if (!fs.lstatSync(path.join(maildir, d), { throwIfNoEntry: false })?.isDirectory()) throw new Failure(EX_NOINPUT, `${target}: not a maildir (no ${d}/ directory)`);
  }
  // Held for the whole rebuild: no session may start and move or delete files meanwhile.
  const session = tryLock(path.join(maildir, MAILDROP_LOCK));
  if (!session) throw new Failure(EX_TEMPFAIL, `${target}: a POP session holds the mailbox; try again later`);
  try {
    return await rebuildPopcache(maildir);
  } finally {
    session.release();
  }
}
