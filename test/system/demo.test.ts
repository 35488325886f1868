/**
 * npm start's demo (demo/demo.ts), run from a copy of the checkout's layout
 * in a temporary directory (its own ./state; packages and node_modules are
 * links to this checkout's), on free ports: it serves what it prints, and as
 * root it writes and chowns nothing through a state folder someone else
 * prepared.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitFor } from '../lib/mailhost';
import { connectTls, login } from '../lib/pop3tls';
import { isRoot, MAILUSER, ROOT } from '../lib/util';

const DEMO = path.join(ROOT, 'demo', 'dist', 'demo.js');

/** A checkout-like tree in dir/name whose ./state is its own; dir is removed after the test. */
function checkout(t: { after: (fn: () => void) => void }, mode = 0o755): { dir: string; tree: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'popd-demo-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, mode);
  const tree = path.join(dir, 'checkout');
  fs.mkdirSync(path.join(tree, 'demo', 'dist'), { recursive: true, mode: 0o755 });
  fs.copyFileSync(DEMO, path.join(tree, 'demo', 'dist', 'demo.js'));
  for (const l of ['packages', 'node_modules']) fs.symlinkSync(path.join(ROOT, l), path.join(tree, l));
  return { dir, tree };
}

interface Demo {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

function startDemo(tree: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Demo {
  const proc = spawn(process.execPath, [path.join(tree, 'demo', 'dist', 'demo.js'), ...args], { cwd: tree, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  proc.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, out: () => out, exited };
}

/** Runs the demo to its end (it refuses before it serves): exit status and output. */
async function refused(tree: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string }> {
  const d = startDemo(tree, ['--tls-port', String(await freePort()), '--stls-port', String(await freePort())], env);
  const code = await d.exited;
  return { code, out: d.out() };
}

/** Starts it, waits for its instructions, logs in with the printed password, and stops it with SIGINT (Ctrl-C). */
async function serve(tree: string): Promise<{ passwords: string[]; state: string }> {
  const tlsPort = await freePort();
  const d = startDemo(tree, ['--tls-port', String(tlsPort), '--stls-port', String(await freePort())]);
  try {
    await waitFor('the demo to print its commands', () => {
      if (d.proc.exitCode !== null) throw new Error(`the demo exited: ${d.out()}`);
      return d.out().includes('Ctrl-C stops it.');
    });
    const passwords = [...d.out().matchAll(/user (alice|bob) {2}password (\S+)/g)].map((m) => m[2]);
    assert.equal(passwords.length, 2, d.out());
    const c = await connectTls(tlsPort);
    await c.line();
    assert.match(await login(c, 'alice', passwords[0]), /^\+OK/);
    assert.match(await c.cmd('RETR 1'), /^\+OK/);
    assert.match((await c.multi()).toString(), /Subject: Welcome to popd/);
    await c.cmd('QUIT');
    return { passwords, state: /state in (\S+)/.exec(d.out())![1] };
  } finally {
    d.proc.kill('SIGINT');
    await d.exited;
  }
}

const owner = (p: string): string => {
  const st = fs.lstatSync(p);
  return `${st.uid}:${(st.mode & 0o7777).toString(8)}`;
};

test('demo: the first start makes ./state and serves the passwords it prints; the next start reuses them', { timeout: 120_000 }, async (t) => {
  const { tree } = checkout(t);
  const first = await serve(tree);
  const state = path.join(tree, 'state');
  assert.equal(first.state, state);
  const me = process.getuid!();
  const mail = isRoot ? MAILUSER.uid : me;
  assert.deepEqual(
    ['', 'key.pem', 'authtab', 'cert.pem', 'usertab', 'passwords.json', 'mail'].map((f) => owner(path.join(state, f))),
    [`${me}:755`, `${mail}:600`, `${mail}:600`, `${me}:644`, `${me}:644`, `${me}:600`, `${mail}:755`],
    'as root, only what popd and popmda use is "nobody"\'s',
  );
  assert.deepEqual(fs.readdirSync(tree).sort(), ['demo', 'node_modules', 'packages', 'state'], 'a half-made state folder was left');
  assert.deepEqual((await serve(tree)).passwords, first.passwords);
});

test('demo as root: a ./state that is a link, someone else\'s or open to others is refused; nothing is written or chowned through it', { skip: !isRoot && 'needs root', timeout: 60_000 }, async (t) => {
  const { dir, tree } = checkout(t);
  // What root must not write or chown: a file and a directory of root's.
  const precious = path.join(dir, 'precious');
  fs.writeFileSync(precious, 'root-only\n', { mode: 0o600 });
  const rootDir = path.join(dir, 'rootdir');
  fs.mkdirSync(rootDir, { mode: 0o700 });
  const state = path.join(tree, 'state');
  const cases: Array<[string, () => void, RegExp]> = [
    ['a link to a root directory', () => fs.symlinkSync(rootDir, state), /state is a symbolic link, which the demo does not follow/],
    [
      'a folder "nobody" prepared with links (as an older demo left it to nobody)',
      () => {
        fs.mkdirSync(state, { mode: 0o755 });
        fs.symlinkSync(precious, path.join(state, 'usertab'));
        fs.symlinkSync(rootDir, path.join(state, 'mail'));
        for (const f of ['', 'usertab', 'mail']) fs.lchownSync(path.join(state, f), MAILUSER.uid, MAILUSER.gid);
      },
      new RegExp(`state belongs to uid ${MAILUSER.uid}, not to uid 0 running the demo \\(an older demo gave it to "nobody"\\)`),
    ],
    ['root\'s, open to all', () => {
        fs.mkdirSync(state);
        fs.chmodSync(state, 0o777);
      }, /state can be written by others \(mode 777\)/],
  ];
  for (const [what, plant, why] of cases) {
    plant();
    const before = fs.readdirSync(tree).sort();
    const r = await refused(tree);
    assert.equal(r.code, 1, `${what}: ${r.out}`);
    assert.match(r.out, why, what);
    assert.deepEqual(fs.readdirSync(tree).sort(), before, `${what}: something was made beside it`);
    assert.equal(fs.readFileSync(precious, 'utf8'), 'root-only\n', `${what}: written through`);
    assert.deepEqual([owner(precious), owner(rootDir)], ['0:600', '0:700'], `${what}: chowned or chmodded through`);
    assert.deepEqual(fs.readdirSync(rootDir), [], `${what}: written into`);
    fs.rmSync(state, { recursive: true, force: true });
  }
});

test('demo as root: a checkout "nobody" cannot reach is refused before anything is written, and no fixed name in the temporary directory is used', { skip: !isRoot && 'needs root', timeout: 60_000 }, async (t) => {
  const { dir, tree } = checkout(t, 0o700);
  // The former fallback: $TMPDIR/popd-demo-state, prepared by "nobody" with links to root's things.
  const tmp = path.join(dir, 'tmp');
  fs.mkdirSync(tmp);
  fs.chmodSync(tmp, 0o1777);
  const planted = path.join(tmp, 'popd-demo-state');
  fs.mkdirSync(planted, { mode: 0o755 });
  const precious = path.join(dir, 'precious');
  fs.writeFileSync(precious, 'root-only\n', { mode: 0o600 });
  fs.symlinkSync(precious, path.join(planted, 'usertab'));
  fs.symlinkSync(dir, path.join(planted, 'mail'));
  for (const f of ['', 'usertab', 'mail']) fs.lchownSync(path.join(planted, f), MAILUSER.uid, MAILUSER.gid);
  const r = await refused(tree, { TMPDIR: tmp });
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /"nobody", which the demo runs popd as, cannot reach .*checkout/);
  assert.equal(fs.readFileSync(precious, 'utf8'), 'root-only\n');
  assert.deepEqual([owner(precious), owner(dir)], ['0:600', '0:700']);
  assert.deepEqual(fs.readdirSync(planted).sort(), ['mail', 'usertab']);
  assert.deepEqual(fs.readdirSync(tree).sort(), ['demo', 'node_modules', 'packages']);
});
