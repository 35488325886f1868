// identity: root, the recipient, the admin
/**
 * authtab and usertab: the operator's files. The formats are those of the C
 * original, read as OpenSMTPD reads its file tables ("credentials" and
 * "userinfo"): comments and blank lines are allowed. Every problem names
 * file:line and why, and never quotes a hash.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface UserInfo {
  user: string;
  uid: number;
  gid: number;
  /** Absolute maildir path (maildirstring plus -e SUBDIR). */
  maildir: string;
}

export interface Tables {
  /** user -> bcrypt hash */
  auth: Map<string, string>;
  users: Map<string, UserInfo>;
}

export interface TableResult<T> {
  value: T;
  problems: string[];
}

const USER = /^[A-Za-z0-9_][A-Za-z0-9._@+=-]{0,127}$/;
const BCRYPT = /^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$/;
const MAX_ID = 4294967294;

export function isValidUser(user: string): boolean {
  return USER.test(user);
}

export function isBcryptHash(hash: string): boolean {
  return BCRYPT.test(hash);
}

/** Splits a table into (line number, key, value) rows, skipping comments and blank lines. */
function rows(text: string, file: string, problems: string[]): Array<{ where: string; key: string; value: string }> {
  const out: Array<{ where: string; key: string; value: string }> = [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, i) => {
    const where = `${file}:${i + 1}`;
    const line = raw.replace(/\r$/, '');
    if (/^\s*(#|$)/.test(line)) return;
    if (line.includes('\0')) {
      problems.push(`${where}: NUL byte in line`);
      return;
    }
    const m = /^\s*(\S+)(?:[ \t]+(.*?))?\s*$/.exec(line);
    if (!m || m[2] === undefined || m[2] === '') {
      problems.push(`${where}: expected "user<space or tab>value"`);
      return;
    }
    out.push({ where, key: m[1], value: m[2] });
  });
  return out;
}

function checkUser(where: string, user: string, seen: Set<string>, problems: string[]): boolean {
  if (!isValidUser(user)) {
    problems.push(`${where}: invalid user name (letters, digits and . _ @ + = - only)`);
    return false;
  }
  if (seen.has(user)) {
    problems.push(`${where}: duplicate user ${user}`);
    return false;
  }
  seen.add(user);
  return true;
}

export function parseAuthtab(text: string, file: string): TableResult<Map<string, string>> {
  const problems: string[] = [];
  const auth = new Map<string, string>();
  const seen = new Set<string>();
  for (const { where, key, value } of rows(text, file, problems)) {
    if (!checkUser(where, key, seen, problems)) continue;
    if (!isBcryptHash(value)) {
      problems.push(`${where}: user ${key}: not a bcrypt hash ($2b$, $2a$ or $2y$, cost 04-31)`);
      continue;
    }
    auth.set(key, value);
  }
  return { value: auth, problems };
}

/** -e SUBDIR without its trailing "/"s, which it may have. */
const plainSubdir = (subdir: string): string => subdir.replace(/\/+$/, '');

/** A subdirectory given with -e: relative, without ".", ".." or empty parts (a trailing "/" is fine). */
export function checkSubdir(subdir: string): string | null {
  const plain = plainSubdir(subdir);
  if (plain === '' || path.isAbsolute(subdir) || plain.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    return `-e ${subdir}: must be a relative path such as Maildir, without ".", ".." or empty parts`;
  }
  return null;
}

export function parseUsertab(text: string, file: string, subdir?: string): TableResult<Map<string, UserInfo>> {
  const problems: string[] = [];
  const users = new Map<string, UserInfo>();
  const seen = new Set<string>();
  for (const { where, key, value } of rows(text, file, problems)) {
    if (!checkUser(where, key, seen, problems)) continue;
    const m = /^(\d{1,10}):(\d{1,10}):(.+)$/.exec(value);
    if (!m) {
      problems.push(`${where}: user ${key}: expected uid:gid:maildir`);
      continue;
    }
    const uid = Number(m[1]);
    const gid = Number(m[2]);
    const dir = m[3];
    if (uid === 0 || gid === 0) {
      problems.push(`${where}: user ${key}: uid and gid must not be 0`);
      continue;
    }
    if (uid > MAX_ID || gid > MAX_ID) {
      problems.push(`${where}: user ${key}: uid or gid out of range`);
      continue;
    }
    if (!path.isAbsolute(dir)) {
      problems.push(`${where}: user ${key}: maildir must be an absolute path`);
      continue;
    }
    if (dir.split('/').includes('..')) {
      problems.push(`${where}: user ${key}: maildir must not contain ".."`);
      continue;
    }
    users.set(key, { user: key, uid, gid, maildir: path.join(dir, plainSubdir(subdir ?? '')) });
  }
  return { value: users, problems };
}

function readTable(file: string, problems: string[]): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    problems.push(`${file}: cannot read: ${e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.code ?? e.message}`);
    return null;
  }
}

/** Loads and cross-checks both tables; the result is usable only when problems is empty. */
export function loadTables(authFile: string, userFile: string, subdir?: string): TableResult<Tables> {
  const problems: string[] = [];
  if (subdir !== undefined) {
    const bad = checkSubdir(subdir);
    if (bad) problems.push(bad);
  }
  const authText = readTable(authFile, problems);
  const userText = readTable(userFile, problems);
  const auth = authText === null ? new Map<string, string>() : collect(parseAuthtab(authText, authFile), problems);
  const users = userText === null ? new Map<string, UserInfo>() : collect(parseUsertab(userText, userFile, subdir), problems);
  if (authText !== null && userText !== null) {
    // A user whose line is malformed has its problem reported already: not a second one here.
    const named = (text: string, file: string): Set<string> => new Set(rows(text, file, []).map((r) => r.key));
    const inAuth = named(authText, authFile);
    const inUsers = named(userText, userFile);
    for (const user of auth.keys()) if (!inUsers.has(user)) problems.push(`${userFile}: user ${user} is in ${authFile} but has no line here`);
    for (const user of users.keys()) if (!inAuth.has(user)) problems.push(`${authFile}: user ${user} is in ${userFile} but has no line here`);
  }
  return { value: { auth, users }, problems };
}

function collect<T>(r: TableResult<T>, problems: string[]): T {
  problems.push(...r.problems);
  return r.value;
}
