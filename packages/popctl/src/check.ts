// identity: the admin
/** popctl check: every problem of the tables, as popd sees them, plus the maildirs' state. */
import fs from 'node:fs';
import { loadTables, Tables } from '@popd/shared/tables';

/** Problems of the maildirs that usertab names: missing, not a directory, wrong owner. */
export function maildirProblems(tables: Tables): string[] {
  const out: string[] = [];
  for (const u of tables.users.values()) {
    let st: fs.Stats;
    try {
      st = fs.statSync(u.maildir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      out.push(`${u.maildir}: user ${u.user}: maildir ${code === 'ENOENT' ? 'does not exist' : `cannot be examined (${code})`}`);
      continue;
    }
    if (!st.isDirectory()) out.push(`${u.maildir}: user ${u.user}: maildir is not a directory`);
    else if (st.uid !== u.uid) out.push(`${u.maildir}: user ${u.user}: maildir is owned by uid ${st.uid}, usertab says ${u.uid}`);
  }
  return out;
}

export function checkTables(authtab: string, usertab: string, subdir?: string): { users: number; problems: string[] } {
  const { value, problems } = loadTables(authtab, usertab, subdir);
  return { users: value.users.size, problems: [...problems, ...maildirProblems(value)] };
}
