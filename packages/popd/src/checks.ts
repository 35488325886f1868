// identity: root
/**
 * Configuration checks done before anything listens, and by -n: every
 * problem is one line. The tables are checked by shared/tables; here the
 * certificate and key, the unprivileged user and its chroot directory.
 */
import fs from 'node:fs';
import { loadTables, Tables } from '@popd/shared/tables';
import { isRoot, lookupUser } from '@popd/shared/privdrop';
import { tls13Context } from '@popd/shared/tls13';
import type { Options } from './options';

export interface Checked {
  tables: Tables;
  /** authpop's identity and chroot; null in unprivileged mode. */
  drop: { root: string; uid: number; gid: number } | null;
  problems: string[];
}

function readable(file: string, what: string, problems: string[]): Buffer | null {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    problems.push(`${file}: cannot read ${what}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (err as Error).message}`);
    return null;
  }
}

/** The certificate chain and key load, and the key belongs to the certificate. */
export function checkCertKey(certFile: string, keyFile: string): string[] {
  const problems: string[] = [];
  const cert = readable(certFile, 'certificate', problems);
  const key = readable(keyFile, 'key', problems);
  if (cert === null || key === null) return problems;
  try {
    tls13Context(cert, key);
  } catch (err) {
    const msg = (err as Error).message;
    problems.push(/mismatch/i.test(msg) ? `${keyFile}: key does not match certificate ${certFile}` : `${certFile}, ${keyFile}: cannot load certificate and key: ${msg}`);
  }
  return problems;
}

function checkDrop(o: Options, problems: string[]): Checked['drop'] {
  if (!isRoot()) return null;
  const pw = lookupUser(o.user);
  if (pw === null) problems.push(`-U ${o.user}: no such user`);
  else if (pw.uid === 0 || pw.gid === 0) problems.push(`-U ${o.user}: must not have uid or gid 0`);
  try {
    const st = fs.statSync(o.chroot);
    if (!st.isDirectory()) problems.push(`-C ${o.chroot}: not a directory`);
    // authpop must not be able to change its own prison.
    else if (st.uid !== 0 || (st.mode & 0o022) !== 0) problems.push(`-C ${o.chroot}: must be owned by root and writable by nobody else`);
  } catch {
    problems.push(`-C ${o.chroot}: no such directory`);
  }
  return pw === null ? null : { root: o.chroot, uid: pw.uid, gid: pw.gid };
}

export function checkConfig(o: Options): Checked {
  const t = loadTables(o.authtab, o.usertab, o.subdir);
  const problems = [...t.problems, ...checkCertKey(o.cert, o.key)];
  const drop = checkDrop(o, problems);
  return { tables: t.value, drop, problems };
}
