/**
 * A running popd for tests: a state directory with a self-signed
 * certificate, authtab and usertab (bcrypt cost 4 by default), maildirs filled through
 * popmda, and popd in the foreground on free ports (TLS and STLS).
 * As root, popd runs as root (real chroot and drops, authpop as _pop3d);
 * mode 'unprivileged' runs it as the mail user instead.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { freePort, waitFor } from './mailhost';
import { BIN, isRoot, MAILUSER, run, tmpdir } from './util';

export interface Account {
  user: string;
  pass: string;
  /** Messages delivered with popmda before popd starts. */
  messages?: Array<string | Buffer>;
  /** The account's uid:gid (as root; MAILUSER unless told). */
  owner?: { uid: number; gid: number };
  /** The authtab hash to write instead of hashing pass here (a benchmark gives another server the same hash). */
  hash?: string;
}

export interface FixtureOptions {
  accounts: Account[];
  mode?: 'root' | 'unprivileged';
  /** Further popd options, e.g. ['-M', '2']. */
  args?: string[];
  /** bcrypt cost of the authtab hashes (4 unless told: tests need no slow hashes). */
  cost?: number;
  /** Pass -v (true unless told; a benchmark runs popd at its default verbosity). */
  verbose?: boolean;
}

/** Makes sure authpop's user and chroot exist on this machine (as root only). */
export function ensurePop3dUser(): void {
  if (spawnSync('id', ['_pop3d'], { stdio: 'ignore' }).status !== 0) {
    const r = spawnSync('useradd', ['-r', '-s', '/usr/sbin/nologin', '-d', '/var/empty', '_pop3d'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`useradd _pop3d: ${r.stderr}`);
  }
  fs.mkdirSync('/var/empty', { recursive: true, mode: 0o755 });
}

/** A self-signed P-256 certificate for localhost in dir: { cert, key }. */
export function makeCert(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
  return { cert, key };
}

function chownTree(dir: string, uid: number, gid: number): void {
  fs.chownSync(dir, uid, gid);
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) chownTree(p, uid, gid);
    else fs.chownSync(p, uid, gid);
  }
}

export class PopdFixture {
  readonly log: string[] = [];
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly dir: string,
    readonly proc: ChildProcess,
    readonly tlsPort: number,
    readonly stlsPort: number,
    readonly files: { authtab: string; usertab: string; cert: string; key: string },
  ) {
    this.exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
    let partial = '';
    proc.stderr!.on('data', (b: Buffer) => {
      const lines = (partial + b.toString()).split('\n');
      partial = lines.pop()!;
      this.log.push(...lines);
    });
  }

  maildir(user: string): string {
    return path.join(this.dir, 'mail', user);
  }

  static async start(o: FixtureOptions): Promise<PopdFixture> {
    const mode = o.mode ?? (isRoot ? 'root' : 'unprivileged');
    if (mode === 'root') ensurePop3dUser();
    const dir = tmpdir('popd-srv-');
    const files = { authtab: path.join(dir, 'authtab'), usertab: path.join(dir, 'usertab'), ...makeCert(dir) };
    fs.writeFileSync(files.authtab, o.accounts.map((a) => `${a.user}\t${a.hash ?? bcrypt.hashSync(a.pass, o.cost ?? 4)}\n`).join(''));
    const owner = (a: Account): { uid: number; gid: number } => a.owner ?? MAILUSER;
    fs.writeFileSync(files.usertab, o.accounts.map((a) => `${a.user}\t${owner(a).uid}:${owner(a).gid}:${path.join(dir, 'mail', a.user)}\n`).join(''));
    if (isRoot) for (const f of Object.values(files)) fs.chownSync(f, MAILUSER.uid, MAILUSER.gid);
    for (const a of o.accounts) {
      const md = path.join(dir, 'mail', a.user);
      fs.mkdirSync(md, { recursive: true, mode: 0o700 });
      if (isRoot) {
        fs.chownSync(path.dirname(md), MAILUSER.uid, MAILUSER.gid);
        fs.chownSync(md, MAILUSER.uid, MAILUSER.gid);
      }
      for (const m of a.messages ?? []) {
        const r = await run(BIN.popmda, ['-m', md], { input: m });
        if (r.status !== 0) throw new Error(`popmda: ${r.stderr}`);
      }
      // Another owner: delivered as MAILUSER above, then given away.
      if (isRoot && a.owner !== undefined) chownTree(md, a.owner.uid, a.owner.gid);
    }
    // With several owners the directories above the maildirs must be root's: a worker refuses a root that another uid could swap.
    if (isRoot && o.accounts.some((a) => a.owner !== undefined)) for (const d of [dir, path.join(dir, 'mail')]) {
        fs.chownSync(d, 0, 0);
        fs.chmodSync(d, 0o755);
      }
    const tlsPort = await freePort();
    const stlsPort = await freePort();
    const args = [BIN.popd, '-d', ...(o.verbose === false ? [] : ['-v']), '-a', files.authtab, '-u', files.usertab, '-c', files.cert, '-k', files.key, '-l', `127.0.0.1:${tlsPort}`, '-s', `127.0.0.1:${stlsPort}`, ...(o.args ?? [])];
    const asMailUser = isRoot && mode === 'unprivileged';
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], ...(asMailUser ? { uid: MAILUSER.uid, gid: MAILUSER.gid } : {}) });
    const f = new PopdFixture(dir, proc, tlsPort, stlsPort, files);
    await waitFor('popd to listen', () => {
      if (proc.exitCode !== null) throw new Error(`popd exited: ${f.log.join('\n')}`);
      return f.log.some((l) => l.includes('listening on'));
    });
    return f;
  }

  /** Waits for a log line matching re (popd, authpop and wrkrpop all log to popd's stderr with -d), among the lines from index after on. */
  async waitLog(re: RegExp, after = 0, timeoutMs = 15_000): Promise<string> {
    let hit: string | undefined;
    await waitFor(`a log line matching ${re}`, () => (hit = this.log.slice(after).find((l) => re.test(l))) !== undefined, timeoutMs);
    return hit!;
  }

  /** SIGTERM and the exit status. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    return this.exited;
  }
}
