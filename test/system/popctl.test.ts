/** popctl against real files, real locks held by other processes, a real terminal and real mbox writers. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { BIN, isRoot, MAILUSER, run, tmpdir } from '../lib/util';
import { hasPython, runOnPty } from '../lib/pty';

const popctl = (args: string[], opts: Parameters<typeof run>[2] = {}) => run(BIN.popctl, args, opts);

/** Wire octets computed independently of shared/wire.ts: every bare LF becomes CRLF. */
function wireOctets(b: Buffer): number {
  let n = b.length;
  for (let i = 0; i < b.length; i++) if (b[i] === 0x0a && (i === 0 || b[i - 1] !== 0x0d)) n++;
  return n;
}
const sha256 = (s: string | Buffer): string => crypto.createHash('sha256').update(s).digest('hex');

/** A maildir (and its parent, which must be inside a tmpdir()) owned by the mail user. */
function mkMaildir(dir: string): string {
  fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o755 });
  for (const d of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(dir, d), { recursive: true, mode: 0o700 });
  if (isRoot) for (const d of ['..', '', 'cur', 'new', 'tmp']) fs.chownSync(path.join(dir, d), MAILUSER.uid, MAILUSER.gid);
  return dir;
}

/** The contents of all messages in new/ and cur/, sorted, for multiset comparison. */
function contents(maildir: string): string[] {
  const out: string[] = [];
  for (const d of ['new', 'cur']) for (const f of fs.readdirSync(path.join(maildir, d))) out.push(fs.readFileSync(path.join(maildir, d, f)).toString('latin1'));
  return out.sort();
}

function popcacheLines(maildir: string): string[] {
  return fs.readFileSync(path.join(maildir, 'popcache'), 'latin1').split('\n').filter((l) => l !== '');
}

const perlCrypt = (pw: string, hash: string): string | null => {
  const r = spawnSync('perl', ['-e', 'print crypt($ARGV[0], $ARGV[1]) // ""', pw, hash], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : null;
};

test('encrypt: $2b$ hash of the first stdin line, default cost 10, verified by bcryptjs and the system crypt', async () => {
  const r = await popctl(['encrypt'], { input: 'correct horse\nignored second line\n' });
  assert.equal(r.status, 0, r.stderr);
  const hash = r.stdout.toString().trim();
  assert.match(hash, /^\$2b\$10\$[./A-Za-z0-9]{53}$/);
  assert.ok(bcrypt.compareSync('correct horse', hash));
  assert.ok(!bcrypt.compareSync('ignored second line', hash));
  const sys = perlCrypt('correct horse', hash);
  if (sys === null || sys === '' || sys === '*0') {
    console.log('# system crypt(3) has no bcrypt here: checked with bcryptjs only');
  } else {
    assert.equal(sys, hash, 'glibc/libxcrypt crypt() agrees');
    assert.notEqual(perlCrypt('wrong', hash), hash);
  }
  const c5 = await popctl(['encrypt', '-c', '5'], { input: 'pw' });
  assert.match(c5.stdout.toString(), /^\$2b\$05\$/);
});

test('encrypt: usage and data errors', async () => {
  for (const cost of ['3', '32', 'x', '1.5']) {
    const r = await popctl(['encrypt', '-c', cost], { input: 'pw\n' });
    assert.equal(r.status, 64, cost);
    assert.match(r.stderr, /cost must be/);
  }
  const empty = await popctl(['encrypt'], { input: '\n' });
  assert.equal(empty.status, 65);
  assert.match(empty.stderr, /empty password/);
  assert.equal((await popctl(['encrypt', '--bogus'])).status, 64);
  assert.equal((await popctl(['nosuch'])).status, 64);
});

test('encrypt on a terminal: asks twice, echoes nothing', { skip: !hasPython && 'python3 with pty is not installed' }, () => {
  const ok = runOnPty([process.execPath, BIN.popctl, 'encrypt', '-c', '4'], [
    ['Password: ', 's3cret-pty\r'],
    ['Again: ', 's3cret-pty\r'],
  ]);
  assert.equal(ok.status, 0, ok.tty);
  assert.ok(bcrypt.compareSync('s3cret-pty', ok.stdout.trim()));
  assert.ok(!ok.tty.includes('s3cret'), 'the password was echoed');
  const bad = runOnPty([process.execPath, BIN.popctl, 'encrypt', '-c', '4'], [
    ['Password: ', 'one\r'],
    ['Again: ', 'two\r'],
  ]);
  assert.equal(bad.status, 65);
  assert.match(bad.tty, /do not match/);
  assert.equal(bad.stdout, '');
});

test('check: clean tables pass; every problem is reported with file:line, never a hash', async () => {
  const dir = tmpdir();
  const hash = bcrypt.hashSync('pw', 4);
  const { uid, gid } = MAILUSER;
  for (const u of ['alice', 'bob']) mkMaildir(path.join(dir, u, 'Maildir'));
  fs.writeFileSync(path.join(dir, 'authtab'), `# users\nalice ${hash}\n\nbob\t${hash}\n`);
  fs.writeFileSync(path.join(dir, 'usertab'), `alice ${uid}:${gid}:${dir}/alice\nbob ${uid}:${gid}:${dir}/bob\n`);
  const good = await popctl(['check', '-a', `${dir}/authtab`, '-u', `${dir}/usertab`, '-e', 'Maildir']);
  assert.equal(good.status, 0, good.stdout.toString() + good.stderr);
  assert.match(good.stdout.toString(), /2 users, no problems/);
  // Without -e the maildirs are the home directories, which exist: still clean.
  assert.equal((await popctl(['check', '-a', `${dir}/authtab`, '-u', `${dir}/usertab`])).status, 0);

  fs.writeFileSync(path.join(dir, 'file'), 'not a dir');
  fs.writeFileSync(
    path.join(dir, 'authtab2'),
    `alice ${hash}\nbob notahash\ncarol ${hash}\ndave ${hash}\nerin ${hash}\nmallory\n`,
  );
  fs.writeFileSync(
    path.join(dir, 'usertab2'),
    `alice ${uid}:${gid}:${dir}/alice/Maildir\ncarol ${uid}:${gid}:${dir}/missing\ndave ${uid}:${gid}:${dir}/file\nerin ${uid + 1}:${gid}:${dir}/bob/Maildir\nfrank 0:0:/root\n`,
  );
  const bad = await popctl(['check', '-a', `${dir}/authtab2`, '-u', `${dir}/usertab2`]);
  assert.equal(bad.status, 78);
  const out = bad.stdout.toString();
  assert.match(out, /authtab2:2: user bob: not a bcrypt hash/);
  assert.match(out, /authtab2:6: expected "user<space or tab>value"/);
  assert.match(out, /usertab2:5: user frank: uid and gid must not be 0/);
  assert.match(out, new RegExp(`${dir}/missing: user carol: maildir does not exist`));
  assert.match(out, new RegExp(`${dir}/file: user dave: maildir is not a directory`));
  assert.match(out, new RegExp(`user erin: maildir is owned by uid ${uid}, usertab says ${uid + 1}`));
  assert.match(bad.stderr, /problems found/);
  assert.ok(!out.includes(hash) && !bad.stderr.includes(hash), 'a hash was printed');
  const missing = await popctl(['check', '-a', `${dir}/nope`, '-u', `${dir}/usertab`]);
  assert.equal(missing.status, 78);
  assert.match(missing.stdout.toString(), /nope: cannot read: no such file/);
  assert.equal((await popctl(['check', '-a', `${dir}/authtab`])).status, 64);
});

/** A maildir as another delivery agent leaves it: names without sizes, CRLF and LF, some in new/. */
function foreignMaildir(): { dir: string; files: Map<string, Buffer> } {
  const dir = mkMaildir(path.join(tmpdir(), 'Maildir'));
  const files = new Map<string, Buffer>([
    ['cur/1700000000.P1Q1.other:2,S', Buffer.from('Subject: a\n\nline\n')],
    ['cur/1700000001.P2Q1.other:2,', Buffer.from('Subject: b\r\n\r\ncrlf\r\nmixed\n')],
    ['new/1700000002.P3Q1.other', Buffer.from('Subject: c\n\n' + 'x\n'.repeat(1000))],
    ['new/1700000003.P4Q1.other,S=99,W=100', Buffer.from('Subject: lying sizes\n\n')],
  ]);
  for (const [f, b] of files) fs.writeFileSync(path.join(dir, f), b);
  fs.symlinkSync('/etc/passwd', path.join(dir, 'cur', '1700000004.P5.evil:2,'));
  if (isRoot) for (const f of files.keys()) fs.chownSync(path.join(dir, f), MAILUSER.uid, MAILUSER.gid);
  fs.writeFileSync(path.join(dir, 'popcache'), 'garbage line\n1700000000.P1Q1.other 5 ' + 'a'.repeat(64) + '\n');
  return { dir, files };
}

function expectedCache(files: Map<string, Buffer>): string[] {
  return [...files]
    .map(([f, b]) => {
      const unique = path.basename(f).split(':')[0];
      return `${unique} ${wireOctets(b)} ${sha256(unique)}`;
    })
    .sort();
}

test('reindex: rebuilds popcache from cur/ and new/ with counted sizes, moving nothing, skipping symlinks', async () => {
  const { dir, files } = foreignMaildir();
  const r = await popctl(['reindex', dir]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout.toString(), /4 messages indexed, 4 entries added or corrected/);
  assert.deepEqual([...popcacheLines(dir)].sort(), expectedCache(files));
  for (const f of files.keys()) assert.ok(fs.existsSync(path.join(dir, f)), `${f} was moved`);
  const again = await popctl(['reindex', dir]);
  assert.match(again.stdout.toString(), /4 messages indexed, 0 entries/);
  assert.equal((await popctl(['reindex', path.join(dir, 'cur')])).status, 66);
});

test('reindex as root becomes the maildir owner: what it creates stays usable by the user', { skip: !isRoot && 'needs root' }, async () => {
  const { dir } = foreignMaildir();
  const r = await popctl(['reindex', dir], { asRoot: true });
  assert.equal(r.status, 0, r.stderr);
  for (const f of ['popcache', 'maildrop.lock', 'popcache.lock']) assert.equal(fs.statSync(path.join(dir, f)).uid, MAILUSER.uid, f);
});

test('reindex refuses while another process holds maildrop.lock (a POP session)', async () => {
  const { dir } = foreignMaildir();
  const lock = path.join(dir, 'maildrop.lock');
  fs.writeFileSync(lock, '');
  if (isRoot) fs.chownSync(lock, MAILUSER.uid, MAILUSER.gid);
  const holder = spawn('flock', [lock, 'sleep', '60'], { stdio: 'ignore' });
  try {
    while (spawnSync('flock', ['-n', lock, 'true']).status === 0) await new Promise((r) => setTimeout(r, 20));
    const r = await popctl(['reindex', dir]);
    assert.equal(r.status, 75);
    assert.match(r.stderr, /a POP session holds the mailbox/);
    assert.ok(!fs.existsSync(path.join(dir, 'popcache.tmp')));
  } finally {
    holder.kill();
  }
});

test('reindex during deliveries: every delivered message ends up in popcache', async () => {
  const dir = mkMaildir(path.join(tmpdir(), 'Maildir'));
  const deliveries: Array<Promise<{ status: number | null; stderr: string }>> = [];
  for (let i = 0; i < 12; i++) deliveries.push(run(BIN.popmda, ['-m', dir], { input: `Subject: ${i}\n\n${'body\n'.repeat(i * 50)}` }));
  // One reindex after another (two at once would refuse each other), alongside the deliveries.
  const reindexes = (async () => {
    const out = [];
    for (let i = 0; i < 3; i++) out.push(await popctl(['reindex', dir]));
    return out;
  })();
  for (const r of [...(await Promise.all(deliveries)), ...(await reindexes)]) assert.equal(r.status, 0, r.stderr);
  const names = fs.readdirSync(path.join(dir, 'new'));
  assert.equal(names.length, 12);
  const cached = new Set(popcacheLines(dir).map((l) => l.split(' ')[0]));
  for (const n of names) assert.ok(cached.has(n), `${n} missing from popcache`);
});

/** An mboxrd writer, written from the format's definition, independent of popctl. */
function mboxrd(messages: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const m of messages) {
    parts.push(Buffer.from('From sender@example.org Sat Jan  3 01:05:34 1996\n'));
    const text = m.toString('latin1').replace(/^(>*From )/gm, '>$1');
    parts.push(Buffer.from(text, 'latin1'), Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

const SAMPLES: Buffer[] = [
  Buffer.from('From: a@example.org\nSubject: plain\n\nhello\n'),
  Buffer.from('Subject: quoting\n\nFrom the start\n>From once\n>>From twice\nnot From here\n\nFrom after blank\n'),
  Buffer.from('Subject: crlf\r\n\r\nline one\r\nline two\r\n'),
  Buffer.from('Subject: dup\n\nsame\n'),
  Buffer.from('Subject: dup\n\nsame\n'),
  Buffer.from('Subject: 8bit \xe9\xff\n\n\x00binary\x01\n', 'latin1'),
  Buffer.from('Subject: trailing blank lines\n\nbody\n\n\n'),
];

test('import mbox (mboxrd): byte-exact, duplicates kept, summary line, idempotent', async () => {
  const dir = tmpdir();
  const mbox = path.join(dir, 'mbox');
  fs.writeFileSync(mbox, mboxrd(SAMPLES));
  const target = path.join(dir, 'Maildir');
  const r = await popctl(['import', 'mbox', mbox, target]);
  assert.equal(r.status, 0, r.stderr);
  const total = SAMPLES.reduce((s, b) => s + b.length, 0);
  assert.equal(r.stdout.toString().trim(), `imported ${SAMPLES.length} messages (${total} bytes) from ${mbox} into ${target}; 0 already imported`);
  assert.deepEqual(contents(target), SAMPLES.map((b) => b.toString('latin1')).sort());
  assert.equal(popcacheLines(target).length, SAMPLES.length, 'each delivery indexed');
  const again = await popctl(['import', 'mbox', mbox, target]);
  assert.match(again.stdout.toString(), /imported 0 messages .*; 7 already imported/);
  assert.equal(contents(target).length, SAMPLES.length);
});

test('import mbox written by Python mailbox (a real mboxo writer)', { skip: !hasPython && 'python3 not installed' }, async () => {
  const dir = tmpdir();
  const msgs = SAMPLES.filter((b) => !/^>+From /m.test(b.toString('latin1'))); // mboxo cannot carry these exactly
  const srcs = msgs.map((b, i) => {
    const f = path.join(dir, `m${i}`);
    fs.writeFileSync(f, b);
    return f;
  });
  const mbox = path.join(dir, 'py.mbox');
  const py = spawnSync('python3', ['-c', 'import mailbox,sys\nmb=mailbox.mbox(sys.argv[1])\nfor f in sys.argv[2:]: mb.add(open(f,"rb").read())\nmb.flush()', mbox, ...srcs]);
  assert.equal(py.status, 0, py.stderr?.toString());
  if (isRoot) fs.chownSync(mbox, MAILUSER.uid, MAILUSER.gid);
  const target = path.join(dir, 'Maildir');
  const r = await popctl(['import', 'mbox', mbox, target]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(contents(target), msgs.map((b) => b.toString('latin1')).sort());
});

test('import mbox: refuses what is not an mbox, and missing sources', async () => {
  const dir = tmpdir();
  fs.writeFileSync(path.join(dir, 'x'), 'Subject: no From_ line\n');
  const r = await popctl(['import', 'mbox', path.join(dir, 'x'), path.join(dir, 'M')]);
  assert.equal(r.status, 65);
  assert.match(r.stderr, /not an mbox/);
  assert.equal((await popctl(['import', 'mbox', path.join(dir, 'none'), path.join(dir, 'M')])).status, 66);
  assert.equal((await popctl(['import', 'tar', path.join(dir, 'x'), path.join(dir, 'M')])).status, 64);
});

test('import resumes after a crash at any point without duplicates or losses', async () => {
  const dir = tmpdir();
  const msgs: Buffer[] = [];
  for (let i = 0; i < 400; i++) msgs.push(Buffer.from(`Subject: ${i % 50}\n\n${'x'.repeat(i % 7)}\n`)); // many identical ones
  const mbox = path.join(dir, 'mbox');
  fs.writeFileSync(mbox, mboxrd(msgs));
  const target = path.join(dir, 'Maildir');
  const child = spawn(process.execPath, [BIN.popctl, 'import', 'mbox', mbox, target], { stdio: 'ignore', ...(isRoot ? { uid: MAILUSER.uid, gid: MAILUSER.gid } : {}) });
  const exited = new Promise((r) => child.on('exit', r));
  while (!(fs.existsSync(path.join(target, 'new')) && fs.readdirSync(path.join(target, 'new')).length >= 30)) await new Promise((r) => setTimeout(r, 5));
  child.kill('SIGKILL');
  await exited;
  const partial = contents(target).length;
  // The crash window between delivery and its record: drop the last "d" line, as a crash there would.
  const sfile = fs.readdirSync(target).find((f) => f.startsWith('.popctl-import-'))!;
  const state = fs.readFileSync(path.join(target, sfile), 'latin1');
  fs.writeFileSync(path.join(target, sfile), state.replace(/d [0-9a-f]{64} \S+\n$/, ''));
  const r = await popctl(['import', 'mbox', mbox, target]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(partial < msgs.length, 'the import was interrupted');
  assert.deepEqual(contents(target), msgs.map((b) => b.toString('latin1')).sort());
});

test('import resumes a crash before the delivery of a message identical to one already imported', async () => {
  const dir = tmpdir();
  const same = Buffer.from('Subject: same\n\nsame\n');
  const mbox = path.join(dir, 'mbox');
  fs.writeFileSync(mbox, mboxrd([same, same]));
  const target = path.join(dir, 'Maildir');
  assert.equal((await popctl(['import', 'mbox', mbox, target])).status, 0);
  // Undo the second delivery and its record, leaving its "b" line: the crash came before the link.
  const sfile = path.join(target, fs.readdirSync(target).find((f) => f.startsWith('.popctl-import-'))!);
  const lines = fs.readFileSync(sfile, 'latin1').split('\n');
  const second = lines[3].split(' ')[2];
  fs.writeFileSync(sfile, lines.slice(0, 3).join('\n') + '\n');
  fs.rmSync(path.join(target, 'new', fs.readdirSync(path.join(target, 'new')).find((f) => f.startsWith(second))!));
  assert.equal(contents(target).length, 1);
  const r = await popctl(['import', 'mbox', mbox, target]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout.toString(), /imported 1 messages .*; 1 already imported/);
  assert.deepEqual(contents(target), [same.toString(), same.toString()]);
});

/** A fresh maildir owned by the mail user and, beside it, an mbox of these messages. */
function importFixture(messages: Buffer[]): { target: string; mbox: string } {
  const dir = tmpdir();
  const target = mkMaildir(path.join(dir, 'u', 'Maildir'));
  const mbox = path.join(dir, 'mbox');
  fs.writeFileSync(mbox, mboxrd(messages));
  return { target, mbox };
}

test('import resumes without taking another delivery of the same content for the message it was interrupted on', async () => {
  const x = Buffer.from('Subject: x\n\nsame text\n');
  const { target, mbox } = importFixture([x]);
  assert.equal((await run(BIN.popmda, ['-m', target], { input: x })).status, 0, 'popmda delivered it earlier');
  // The import records that it is about to deliver x, then the delivery fails.
  fs.chmodSync(path.join(target, 'tmp'), 0o500);
  assert.notEqual((await popctl(['import', 'mbox', mbox, target])).status, 0);
  fs.chmodSync(path.join(target, 'tmp'), 0o700);
  const r = await popctl(['import', 'mbox', mbox, target]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout.toString(), /imported 1 messages .*; 0 already imported/);
  assert.deepEqual(contents(target), [x.toString(), x.toString()]);
});

test('two imports of one source into one maildir at once: one runs, the other exits 75, nothing twice', async () => {
  const msgs = Array.from({ length: 1500 }, (_, i) => Buffer.from(`Subject: ${i}\n\nbody ${i}\n`));
  const { target, mbox } = importFixture(msgs);
  const both = await Promise.all([popctl(['import', 'mbox', mbox, target]), popctl(['import', 'mbox', mbox, target])]);
  assert.deepEqual(both.map((r) => r.status).sort(), [0, 75], both.map((r) => r.stderr).join(''));
  assert.match(both.find((r) => r.status === 75)!.stderr, /already running/);
  assert.equal(contents(target).length, msgs.length);
});

test('import of an mbox locked by a delivery (flock) exits 75 and imports nothing until it is released', async () => {
  const { target, mbox } = importFixture(SAMPLES);
  const holder = spawn('flock', ['-x', mbox, 'sh', '-c', 'echo held; exec cat'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const released = new Promise((r) => holder.on('exit', r));
  await new Promise((r) => holder.stdout.once('data', r));
  const locked = await popctl(['import', 'mbox', mbox, target]);
  assert.equal(locked.status, 75);
  assert.match(locked.stderr, /locked by a delivery/);
  assert.deepEqual(contents(target), []);
  holder.stdin.end();
  await released;
  assert.equal((await popctl(['import', 'mbox', mbox, target])).status, 0);
  assert.equal(contents(target).length, SAMPLES.length);
});

/** Every path under dir, relative, sorted: what a refused command must leave as it was. */
function listing(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

/** A uid:gid that is neither root nor the mail user: another local user (as root only). */
const OTHER = { uid: MAILUSER.uid - 1, gid: MAILUSER.gid - 1 };

test('as root, import reads the source as the target maildir owner: links to another user\'s 0600 spool are refused, nothing written', { skip: !isRoot && 'needs root' }, async () => {
  const dir = tmpdir();
  const target = mkMaildir(path.join(dir, 'u', 'Maildir'));
  // Another user's spool, as in /var/mail, and the mail user's home with links to it.
  const spool = path.join(dir, 'spool');
  fs.mkdirSync(spool, { mode: 0o755 });
  const victim = path.join(spool, 'victim');
  fs.writeFileSync(victim, mboxrd([Buffer.from('Subject: secret\n\nnot yours\n')]), { mode: 0o600 });
  fs.chownSync(victim, OTHER.uid, OTHER.gid);
  const home = path.join(dir, 'home');
  fs.mkdirSync(home, { mode: 0o755 });
  fs.symlinkSync(victim, path.join(home, 'mbox'));
  fs.symlinkSync(spool, path.join(home, 'spooldir'));
  fs.linkSync(victim, path.join(home, 'hardlink'));
  for (const f of ['mbox', 'spooldir']) fs.lchownSync(path.join(home, f), MAILUSER.uid, MAILUSER.gid);
  fs.chownSync(home, MAILUSER.uid, MAILUSER.gid);
  const before = listing(target);
  const link = await popctl(['import', 'mbox', path.join(home, 'mbox'), target], { asRoot: true });
  assert.equal(link.status, 66, link.stderr);
  assert.match(link.stderr, /mbox: is a symbolic link/);
  for (const via of [path.join(home, 'spooldir', 'victim'), path.join(home, 'hardlink')]) {
    const r = await popctl(['import', 'mbox', via, target], { asRoot: true });
    assert.equal(r.status, 77, r.stderr);
    assert.match(r.stderr, new RegExp(`permission denied; as root, popctl reads the source as the target maildir's owner \\(uid ${MAILUSER.uid}\\)`));
  }
  assert.deepEqual(listing(target), before, 'the refused imports wrote into the maildir');
  // A spool the owner of the maildir can read comes in (and the next run skips it).
  const own = path.join(home, 'own.mbox');
  fs.writeFileSync(own, mboxrd(SAMPLES), { mode: 0o600 });
  fs.chownSync(own, MAILUSER.uid, MAILUSER.gid);
  const ok = await popctl(['import', 'mbox', own, target], { asRoot: true });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(contents(target).length, SAMPLES.length);
  for (const f of listing(target)) assert.equal(fs.statSync(path.join(target, f)).uid, MAILUSER.uid, f);
});

test('as root, a target maildir that is a symlink or on a path another user could change is refused, nothing written', { skip: !isRoot && 'needs root' }, async (t) => {
  // Root's directory, holding the mail user's u/ and another user's maildir.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'popd-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, 0o755);
  const mbox = path.join(dir, 'mbox');
  fs.writeFileSync(mbox, mboxrd(SAMPLES), { mode: 0o644 });
  const victim = path.join(dir, 'victim', 'Maildir');
  for (const d of ['', 'cur', 'new', 'tmp']) fs.mkdirSync(path.join(victim, d), { recursive: true, mode: 0o700 });
  for (const d of ['..', '', 'cur', 'new', 'tmp']) fs.chownSync(path.join(victim, d), OTHER.uid, OTHER.gid);
  // Two ways for the mail user to point popctl at it: the maildir itself a link, or a link in a directory of its own.
  const u = path.join(dir, 'u');
  fs.mkdirSync(u, { mode: 0o755 });
  fs.symlinkSync(victim, path.join(u, 'Maildir'));
  fs.symlinkSync(path.dirname(victim), path.join(u, 'v'));
  for (const f of ['', 'Maildir', 'v']) fs.lchownSync(path.join(u, f), MAILUSER.uid, MAILUSER.gid);
  const before = listing(path.dirname(victim));
  for (const cmd of [['import', 'mbox', mbox], ['reindex']]) {
    const link = await popctl([...cmd, path.join(u, 'Maildir')], { asRoot: true });
    assert.equal(link.status, 77, link.stderr);
    assert.match(link.stderr, /Maildir: is a symbolic link; as root, popctl does not follow it/);
    const swappable = await popctl([...cmd, path.join(u, 'v', 'Maildir')], { asRoot: true });
    assert.equal(swappable.status, 77, swappable.stderr);
    assert.match(swappable.stderr, new RegExp(`${u} \\(owner ${MAILUSER.uid}, group ${MAILUSER.gid}, mode 0755\\) lets another user than uid ${OTHER.uid} replace ${u}/v`));
  }
  assert.deepEqual(listing(path.dirname(victim)), before, 'a refused command wrote into the other user\'s maildir');
  // Through its own path, the other user's maildir is imported into as that user.
  const r = await popctl(['import', 'mbox', mbox, victim], { asRoot: true });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(contents(victim).length, SAMPLES.length);
  for (const f of listing(victim)) assert.equal(fs.statSync(path.join(victim, f)).uid, OTHER.uid, f);
});

test('import and reindex -u: the owner comes from usertab and must own the maildir', async () => {
  const dir = tmpdir();
  const target = mkMaildir(path.join(dir, 'carol', 'Maildir'));
  const mbox = path.join(dir, 'mbox');
  fs.writeFileSync(mbox, mboxrd(SAMPLES), { mode: 0o644 });
  const usertab = path.join(dir, 'usertab');
  const asRoot = { asRoot: isRoot };
  fs.writeFileSync(usertab, `carol ${MAILUSER.uid}:${MAILUSER.gid}:${path.join(dir, 'carol')}\n`);
  const ok = await popctl(['import', '-u', usertab, '-e', 'Maildir', 'mbox', mbox, target], asRoot);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal((await popctl(['reindex', '-u', usertab, '-e', 'Maildir/', target], asRoot)).status, 0);
  const unknown = await popctl(['reindex', '-u', usertab, target], asRoot);
  assert.equal(unknown.status, 67, unknown.stderr);
  assert.match(unknown.stderr, /no user of .*usertab has this maildir \(is -e missing\?\)/);
  const before = listing(target);
  fs.writeFileSync(usertab, `carol ${MAILUSER.uid + 1}:${MAILUSER.gid}:${target}\n`);
  const wrong = await popctl(['import', '-u', usertab, 'mbox', mbox, target], asRoot);
  assert.equal(wrong.status, 77, wrong.stderr);
  assert.match(wrong.stderr, isRoot ? new RegExp(`owned by uid ${MAILUSER.uid}, usertab says ${MAILUSER.uid + 1}`) : /usertab gives it to uid/);
  assert.deepEqual(listing(target), before);
  assert.equal((await popctl(['reindex', '-e', 'Maildir', target])).status, 64, '-e needs -u');
  assert.equal((await popctl(['reindex', '-u', path.join(dir, 'none'), target])).status, 78);
});

test('import refuses a FIFO or a symlink as its mbox at once, writing nothing', async () => {
  const { target, mbox } = importFixture(SAMPLES);
  const fifo = path.join(path.dirname(mbox), 'fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const link = path.join(path.dirname(mbox), 'link');
  fs.symlinkSync(mbox, link);
  const before = listing(target);
  for (const asRoot of isRoot ? [false, true] : [false]) {
    let timer: NodeJS.Timeout | undefined;
    // A guard, not a measurement: an open that waits for a FIFO's writer would wait forever.
    const r = await popctl(['import', 'mbox', fifo, target], { asRoot, onSpawn: (c) => (timer = setTimeout(() => c.kill('SIGKILL'), 30_000)) });
    clearTimeout(timer);
    assert.equal(r.signal, null, 'popctl hung on the FIFO');
    assert.equal(r.status, 66, r.stderr);
    assert.match(r.stderr, /fifo: not a regular file/);
    const l = await popctl(['import', 'mbox', link, target], { asRoot });
    assert.equal(l.status, 66, l.stderr);
    assert.match(l.stderr, /link: is a symbolic link/);
  }
  assert.deepEqual(listing(target), before);
});

test('import maildir: byte-exact in delivery order, never follows symlinks', async () => {
  const { dir: src, files } = foreignMaildir();
  const target = path.join(tmpdir(), 'Maildir');
  const r = await popctl(['import', 'maildir', src, target]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout.toString(), /imported 4 messages/);
  assert.deepEqual(contents(target), [...files.values()].map((b) => b.toString('latin1')).sort());
  assert.ok(!contents(target).some((c) => c.includes('root:')), '/etc/passwd came in through a symlink');
  assert.match((await popctl(['import', 'maildir', src, target])).stdout.toString(), /imported 0 messages .*4 already imported/);
});

test('import shows a progress bar on a terminal only', { skip: !hasPython && 'python3 with pty is not installed' }, () => {
  const dir = tmpdir();
  fs.writeFileSync(path.join(dir, 'mbox'), mboxrd(SAMPLES));
  if (isRoot) fs.chownSync(path.join(dir, 'mbox'), MAILUSER.uid, MAILUSER.gid);
  const r = runOnPty([process.execPath, BIN.popctl, 'import', 'mbox', path.join(dir, 'mbox'), path.join(dir, 'Maildir')], []);
  assert.equal(r.status, 0, r.tty);
  assert.match(r.tty, /\[#{30}\] 100% 7 messages/);
  assert.match(r.stdout, /^imported 7 messages/);
});
