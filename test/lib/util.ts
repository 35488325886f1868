/** Shared test helpers: temp dirs, the project's programs, an unprivileged identity. */
import { ChildProcess, spawn, SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// Compiled to test/dist/lib/util.js: three levels below the repository.
export const ROOT = path.resolve(__dirname, '..', '..', '..');
export const BIN = {
  popd: path.join(ROOT, 'packages/popd/dist/main.js'),
  authpop: path.join(ROOT, 'packages/authpop/dist/main.js'),
  wrkrpop: path.join(ROOT, 'packages/wrkrpop/dist/main.js'),
  popmda: path.join(ROOT, 'packages/mda/dist/main.js'),
  popctl: path.join(ROOT, 'packages/popctl/dist/main.js'),
};

export const isRoot = process.getuid?.() === 0;

/**
 * The identity mail is delivered and served as. As root that is "nobody"
 * (popmda and wrkrpop refuse uid 0); otherwise the invoking user.
 */
export const MAILUSER: { uid: number; gid: number } = isRoot ? { uid: 65534, gid: 65534 } : { uid: process.getuid!(), gid: process.getgid!() };

/** A fresh directory the mail user can write (mode 0755 for the path to be traversable). */
export function tmpdir(prefix = 'popd-test-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(d, 0o755);
  if (isRoot) fs.chownSync(d, MAILUSER.uid, MAILUSER.gid);
  return d;
}

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs a program to completion, feeding input on stdin. As root it runs as MAILUSER unless asRoot is set; onSpawn sees the child (e.g. its pid) while it runs; input null leaves stdin to onSpawn. */
export function run(
  file: string,
  args: string[],
  opts: { input?: Buffer | string | null; env?: NodeJS.ProcessEnv; asRoot?: boolean; cwd?: string; onSpawn?: (child: ChildProcess) => void } = {},
): Promise<RunResult> {
  const so: SpawnOptions = { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'], cwd: opts.cwd ?? ROOT };
  if (isRoot && !opts.asRoot) {
    so.uid = MAILUSER.uid;
    so.gid = MAILUSER.gid;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(file.endsWith('.js') ? process.execPath : file, file.endsWith('.js') ? [file, ...args] : args, so);
    const out: Buffer[] = [];
    let err = '';
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout: Buffer.concat(out), stderr: err }));
    opts.onSpawn?.(child);
    child.stdin!.on('error', () => undefined); // the program may exit before reading everything
    if (opts.input !== null) child.stdin!.end(opts.input ?? '');
  });
}
