/**
 * popmda as OpenSMTPD runs it: a real process (as nobody when the tests run
 * as root) with the message on stdin. Concurrency, byte-exact storage with
 * bounded memory, a really full disk, exit codes and trace headers.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openMailbox } from '@popd/store/maildir';
import { INPUTS, ls, mailUserMaildir, readPopcacheLines, referenceWireSize, removeScratchDirs, scratchDir, sha256 } from '../lib/store';
import { BIN, isRoot, MAILUSER, run, RunResult, tmpdir } from '../lib/util';
import { hasPython } from '../lib/pty';

after(removeScratchDirs);

type RunOpts = Parameters<typeof run>[2];
const popmda = (args: string[], opts: RunOpts = {}): Promise<RunResult> => run(BIN.popmda, args, opts);

/** The last line popmda printed: OpenSMTPD logs it or puts it in the bounce. */
function lastLine(r: RunResult): string {
  return r.stderr.trimEnd().split('\n').pop() ?? '';
}

/** A failure is exactly one line on stderr. */
function assertFails(r: RunResult, status: number, reason: RegExp): void {
  assert.equal(r.status, status, `exit status; stderr: ${r.stderr}`);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line on stderr: ${r.stderr}`);
  assert.match(lastLine(r), reason);
}

/** Checks new/ against what was sent: same multiset of contents, sizes in the names and popcache equal to the reference. */
function assertDelivered(maildir: string, sent: Buffer[]): void {
  const files = ls(maildir, 'new');
  assert.equal(files.length, sent.length, 'one file per delivery');
  assert.deepEqual(ls(maildir, 'tmp'), [], 'tmp/ is empty');
  const want = sent.map((b) => sha256(b)).sort();
  const got: string[] = [];
  const wire = new Map<string, number>();
  for (const f of files) {
    const data = fs.readFileSync(path.join(maildir, 'new', f));
    got.push(sha256(data));
    wire.set(f, referenceWireSize(data));
    assert.ok(f.endsWith(`,S=${data.length},W=${referenceWireSize(data)}`), `${f}: sizes in the name`);
  }
  assert.deepEqual(got.sort(), want, 'stored bytes equal the input bytes');
  const lines = readPopcacheLines(maildir);
  assert.equal(lines.length, sent.length, 'one popcache line per delivery');
  assert.deepEqual(lines.map((l) => l.name).sort(), files, 'popcache names the files in new/');
  for (const l of lines) {
    assert.equal(l.octets, wire.get(l.name), `${l.name}: octets are the wire size`);
    assert.equal(l.uidl, sha256(l.name), `${l.name}: uidl`);
  }
  assert.equal(new Set(lines.map((l) => l.uidl)).size, lines.length, 'UIDLs are unique');
}

test('200 popmda processes delivering at once into one maildir', async () => {
  const md = path.join(scratchDir(), 'Maildir'); // created by the first popmda that gets there
  const sent = Array.from({ length: 200 }, (_, i) => {
    const kind = INPUTS[i % INPUTS.length].data;
    return Buffer.concat([Buffer.from(`Subject: message ${i}\n\n`), kind.subarray(0, 5000), Buffer.from(i % 3 ? '\n' : '')]);
  });
  const results = await Promise.all(sent.map((input) => popmda(['-m', md], { input })));
  for (const r of results) assert.equal(r.status, 0, r.stderr);
  assertDelivered(md, sent);
});

test('byte-exact storage through popmda: 8-bit, NUL, CRLF, LF, mixed, no final newline, empty', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  for (const { name, data } of INPUTS) {
    const r = await popmda(['-m', md], { input: data });
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    assert.equal(r.stdout.length, 0, 'nothing on stdout');
  }
  assertDelivered(
    md,
    INPUTS.map((i) => i.data),
  );
});

/**
 * popmda run under python3, which reports its peak resident set exactly
 * (getrusage of its waited-for child, kB on Linux). Sampling /proc while it
 * ran missed the peak of a short run when the test itself was starved.
 */
const PEAK = `import resource, subprocess, sys
r = subprocess.run(sys.argv[1:])
print("peak-rss-kb=%d" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(r.returncode)`;
async function popmdaPeak(args: string[], input: Buffer | string): Promise<RunResult & { peakKb: number }> {
  const r = await run('python3', ['-c', PEAK, process.execPath, BIN.popmda, ...args], { input });
  const m = /^peak-rss-kb=(\d+)$/m.exec(r.stderr);
  assert.ok(m, r.stderr);
  return { ...r, peakKb: Number(m[1]) };
}


test('a 50 MB message is stored byte for byte in bounded memory', { skip: !(hasPython && process.platform === 'linux') && 'needs python3 on Linux to read the peak RSS (ru_maxrss in kB)' }, async () => {
  const md = path.join(scratchDir(), 'Maildir');
  const small = await popmdaPeak(['-m', md], 'Subject: small\n\nx\n');
  assert.equal(small.status, 0, small.stderr);
  // 50 MiB of lines of every length and ending: LF, CRLF, 8-bit and NUL bytes, no final newline.
  const line = Buffer.concat([Buffer.from('a line with 8-bit \xe4\xf6 and a NUL \0 '), crypto.randomBytes(64).map((b) => (b === 0x0a || b === 0x0d ? 0x20 : b))]);
  const parts: Buffer[] = [Buffer.from('Subject: big\n\n')];
  let total = 0;
  for (let i = 0; total < 50 * 1024 * 1024; i++) {
    const p = Buffer.concat([line.subarray(0, i % line.length), Buffer.from(i % 2 ? '\n' : '\r\n')]);
    parts.push(p);
    total += p.length;
  }
  parts.push(Buffer.from('the end'));
  const big = Buffer.concat(parts);
  const r = await popmdaPeak(['-m', md], big);
  assert.equal(r.status, 0, r.stderr);
  assertDelivered(md, [Buffer.from('Subject: small\n\nx\n'), big]);
  // Bound: a 50 MB message may add at most 32 MB to what a 17-byte message needs; buffering it would add 50 MB or more.
  // The stdin chunks popmda has written are freed at V8's pace, which follows the JavaScript garbage made meanwhile:
  // 8 MB when the wire-size counter made an array per chunk, 21-25 MB since it makes none, 13 MB with a 1 MB young generation.
  // None of it is held: popmda's peak RSS was 53 MB for 1 MB, 74 MB for 50 MB and 80 MB for 100 MB (/usr/bin/time).
  const growthMb = (r.peakKb - small.peakKb) / 1024;
  console.log(`# popmda peak RSS: small message ${(small.peakKb / 1024).toFixed(1)} MB, 50 MB message ${(r.peakKb / 1024).toFixed(1)} MB`);
  assert.ok(small.peakKb > 0 && r.peakKb > 0, 'the peaks were read');
  assert.ok(growthMb < 32, `memory grew by ${growthMb.toFixed(1)} MB for a 50 MB message`);
});

/** A tmpfs of the given size mounted on a fresh directory, owned by the mail user; null with the reason when impossible. */
function mountTmpfs(size: string): { dir: string; unmount: () => void } | string {
  if (!isRoot) return 'not root: cannot mount a tmpfs';
  const dir = tmpdir('popd-tmpfs-');
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755,uid=${MAILUSER.uid},gid=${MAILUSER.gid}`, 'popd-test', dir], { encoding: 'utf8' });
  if (m.status !== 0) return `mount -t tmpfs failed: ${(m.stderr || m.error?.message || '').trim()}`;
  return {
    dir,
    unmount: () => {
      spawnSync('umount', [dir]);
      fs.rmdirSync(dir);
    },
  };
}

const canMount = (): string | false => {
  const t = mountTmpfs('64k');
  if (typeof t === 'string') return t;
  t.unmount();
  return false;
};
const noMount = canMount();

test('disk full: exit 75, nothing left in new/ or tmp/, earlier messages and popcache untouched', { skip: noMount }, async () => {
  const fsys = mountTmpfs('1m');
  assert.ok(typeof fsys !== 'string', String(fsys));
  try {
    const md = mailUserMaildir(path.join(fsys.dir, 'Maildir'));
    const earlier = [Buffer.from('Subject: one\n\nfirst\n'), Buffer.from('Subject: two\r\n\r\nsecond')];
    for (const input of earlier) assert.equal((await popmda(['-m', md], { input })).status, 0);
    const cacheBefore = fs.readFileSync(path.join(md, 'popcache'));
    const r = await popmda(['-m', md], { input: crypto.randomBytes(2 * 1024 * 1024) });
    assertFails(r, 75, /^popmda: delivery to .* failed, will retry: ENOSPC$/);
    assertDelivered(md, earlier);
    assert.ok(fs.readFileSync(path.join(md, 'popcache')).equals(cacheBefore), 'popcache unchanged');
    // Once there is room again, the same message goes through.
    assert.equal((await popmda(['-m', md], { input: crypto.randomBytes(100_000) })).status, 0);
  } finally {
    fsys.unmount();
  }
});

test('disk fills up at the popcache append: delivered (exit 0), no partial popcache line, indexed at the next login', { skip: noMount }, async () => {
  const fsys = mountTmpfs('256k');
  assert.ok(typeof fsys !== 'string', String(fsys));
  try {
    const md = mailUserMaildir(path.join(fsys.dir, 'Maildir'));
    assert.equal((await popmda(['-m', md], { input: 'Subject: first\n\n' })).status, 0);
    // popcache ends 40 bytes before a page boundary, so the next line needs a page that will not be there.
    const page = 4096;
    let cache = fs.readFileSync(path.join(md, 'popcache'), 'latin1');
    for (let i = 0; cache.length < page - 40; i++) {
      const room = page - 40 - cache.length;
      const stem = `1600000000.M${i}P1R1.h,S=1,W=1`;
      const name = room >= 2 * 110 ? stem : stem + 'x'.repeat(Math.max(0, room - (stem.length + 68)));
      cache += `${name} 1 ${sha256(name)}\n`;
    }
    assert.equal(cache.length, page - 40);
    fs.writeFileSync(path.join(md, 'popcache'), cache, 'latin1');
    const filler = path.join(fsys.dir, 'filler');
    const fd = fs.openSync(filler, 'w');
    const block = Buffer.alloc(page, 0x66);
    try {
      for (;;) fs.writeSync(fd, block);
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
    }
    // Room for exactly a 3-page message, not for the popcache line as well.
    fs.ftruncateSync(fd, fs.fstatSync(fd).size - 3 * page);
    fs.closeSync(fd);
    const msg = Buffer.alloc(3 * page, 0x41);
    msg.write('Subject: fits exactly\n\n');
    const r = await popmda(['-m', md], { input: msg });
    assert.equal(r.status, 0, r.stderr);
    const delivered = ls(md, 'new').find((f) => fs.readFileSync(path.join(md, 'new', f)).equals(msg));
    assert.ok(delivered, 'the message is in new/');
    assert.equal(fs.readFileSync(path.join(md, 'popcache'), 'latin1'), cache, 'the failed append left no partial line');
    fs.rmSync(filler);
    const box = await openMailbox(md);
    assert.ok(box.messages.some((m) => m.unique === delivered && m.octets === referenceWireSize(msg)));
    assert.ok(readPopcacheLines(md).some((l) => l.name === delivered));
  } finally {
    fsys.unmount();
  }
});

test('usage errors exit 64 with one line saying what is wrong', async () => {
  const dir = scratchDir();
  const cases: Array<[string[], RegExp]> = [
    [[], /give either -m maildir or -u usertab user/],
    [['-m', dir, '-u', '/etc/usertab', 'u'], /give either/],
    [['-u', path.join(dir, 'usertab')], /-u needs a user name/],
    [['-m', dir, 'extra'], /-m takes no user and no -e/],
    [['-m', dir, '-e', 'sub'], /-m takes no user and no -e/],
    [['-u', path.join(dir, 'usertab'), '-e', '../escape', 'u'], /-e \.\.\/escape: must be a relative path/],
    [['-u', path.join(dir, 'usertab'), '-e', '/abs', 'u'], /must be a relative path/],
    [['--bogus', '-m', dir], /unknown option '--bogus'/],
    [['-m'], /argument missing/],
  ];
  for (const [args, reason] of cases) assertFails(await popmda(args, { input: 'x\n' }), 64, reason);
  assert.deepEqual(fs.readdirSync(dir), [], 'nothing created');
  const help = await popmda(['--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout.toString(), /Exit status: 0 delivered, 64 usage, 67 unknown user, 73 cannot create the\s+maildir, 75 temporary failure/);
});

/** A usertab giving user the mail user's uid and the given maildirstring. */
function usertab(dir: string, lines: string[]): string {
  const f = path.join(dir, 'usertab');
  fs.writeFileSync(f, lines.join('\n') + '\n');
  return f;
}

test('-u: unknown user 67; a usertab with errors or unreadable 75; the uid must be ours (75); -e SUBDIR', async () => {
  const dir = scratchDir();
  const home = path.join(dir, 'home');
  const ut = usertab(dir, ['# users', '', `alice\t${MAILUSER.uid}:${MAILUSER.gid}:${home}`, `other ${MAILUSER.uid + 1}:${MAILUSER.gid}:/var/mail/other`]);
  assertFails(await popmda(['-u', ut, 'bob'], { input: 'x\n' }), 67, /^popmda: unknown user bob$/);
  assertFails(await popmda(['-u', ut, 'other'], { input: 'x\n' }), 75, /usertab gives other uid/);
  assertFails(await popmda(['-u', path.join(dir, 'missing'), 'alice'], { input: 'x\n' }), 75, /cannot read usertab .*: ENOENT/);
  const broken = path.join(dir, 'broken');
  fs.writeFileSync(broken, `alice ${MAILUSER.uid}:${MAILUSER.gid}:${home}\nbob not-a-uid\n`);
  assertFails(await popmda(['-u', broken, 'bob'], { input: 'x\n' }), 75, /usertab has errors: .*broken:2:/);
  assert.equal((await popmda(['-u', broken, 'alice'], { input: 'x\n' })).status, 0, 'a good line still works');

  const r = await popmda(['-u', ut, '-e', 'Maildir', 'alice'], { input: 'Subject: to the subdir\n\n' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(ls(path.join(home, 'Maildir'), 'new').length, 1);
  assert.equal(fs.readFileSync(path.join(home, 'Maildir', 'new', ls(path.join(home, 'Maildir'), 'new')[0]), 'latin1'), 'Subject: to the subdir\n\n');
  assert.equal(ls(home, 'new').length, 1, 'the earlier delivery without -e went to the maildirstring itself');
  assert.equal(fs.statSync(path.join(home, 'Maildir')).uid, MAILUSER.uid);
});

test('a maildir that cannot be created exits 73', async () => {
  const dir = scratchDir();
  const ro = path.join(dir, 'readonly');
  fs.mkdirSync(ro, { mode: 0o555 });
  if (isRoot) fs.chownSync(ro, MAILUSER.uid, MAILUSER.gid);
  assertFails(await popmda(['-m', path.join(ro, 'Maildir')], { input: 'x\n' }), 73, /^popmda: cannot create maildir .*readonly\/Maildir: EACCES$/);
  fs.writeFileSync(path.join(dir, 'file'), '');
  if (isRoot) fs.chownSync(path.join(dir, 'file'), MAILUSER.uid, MAILUSER.gid);
  assertFails(await popmda(['-m', path.join(dir, 'file', 'Maildir')], { input: 'x\n' }), 73, /cannot create maildir .*: (ENOTDIR|EEXIST)$/);
  assertFails(await popmda(['-m', path.join(dir, 'file')], { input: 'x\n' }), 73, /cannot create maildir/);
  assert.deepEqual(fs.readdirSync(ro), []);
});

test('an existing maildir this user cannot enter, or one behind a directory it cannot search, is temporary (75), not a bounce', async () => {
  const dir = scratchDir();
  if (isRoot) fs.chownSync(dir, MAILUSER.uid, MAILUSER.gid);
  // The maildir and its subdirectories exist, but mode 0 keeps the delivery user out.
  const md = mailUserMaildir(path.join(dir, 'Maildir'));
  fs.chmodSync(md, 0);
  assertFails(await popmda(['-m', md], { input: 'x\n' }), 75, /^popmda: cannot set up maildir .*\/Maildir, will retry: EACCES$/);
  fs.chmodSync(md, 0o700);
  const home = path.join(dir, 'home');
  mailUserMaildir(path.join(home, 'Maildir'));
  fs.chmodSync(home, 0o600);
  if (isRoot) fs.chownSync(home, 0, 0);
  assertFails(await popmda(['-m', path.join(home, 'Maildir')], { input: 'x\n' }), 75, /will retry: EACCES$/);
  fs.chmodSync(home, 0o700);
  assert.deepEqual(ls(md, 'new'), []);
});

test('permission problems inside an existing maildir are temporary (75), never a bounce, and leave nothing behind', async () => {
  const md = mailUserMaildir(path.join(scratchDir(), 'Maildir'));
  assert.equal((await popmda(['-m', md], { input: 'first\n' })).status, 0);
  fs.chmodSync(path.join(md, 'tmp'), 0o500);
  assertFails(await popmda(['-m', md], { input: 'x\n' }), 75, /^popmda: delivery to .* failed, will retry: EACCES$/);
  fs.chmodSync(path.join(md, 'tmp'), 0o700);
  if (isRoot) {
    // A popcache.lock left by a root process: the mail waits (tmp/ cleaned up) until the operator fixes it.
    fs.chownSync(path.join(md, 'popcache.lock'), 0, 0);
    assertFails(await popmda(['-m', md], { input: 'x\n' }), 75, /will retry: EACCES$/);
    assert.deepEqual(ls(md, 'tmp'), []);
    fs.chownSync(path.join(md, 'popcache.lock'), MAILUSER.uid, MAILUSER.gid);
  }
  assertDelivered(md, [Buffer.from('first\n')]);
});

test('a maildir is created (0700, durable) under a spool directory the mail user may write but not read', async () => {
  const spool = path.join(scratchDir(), 'spool');
  fs.mkdirSync(spool);
  // Owned by root when we are root (others may write and search), else our own with no read bit.
  fs.chmodSync(spool, isRoot ? 0o1733 : 0o333);
  try {
    const r = await popmda(['-m', path.join(spool, 'alice', 'Maildir')], { input: 'x\n' });
    assert.equal(r.status, 0, r.stderr);
    for (const d of ['alice', 'alice/Maildir', 'alice/Maildir/new']) assert.equal(fs.statSync(path.join(spool, d)).mode & 0o777, 0o700, d);
    assert.equal(ls(path.join(spool, 'alice', 'Maildir'), 'new').length, 1);
  } finally {
    fs.chmodSync(spool, 0o755);
  }
});

test('killed mid-message (the MTA timing out its MDA): exit 75, the partial message withdrawn from tmp/', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  for (const sig of ['SIGTERM', 'SIGHUP'] as const) {
    const r = await popmda(['-m', md], {
      input: null,
      onSpawn: (child) => {
        child.stdin!.write(Buffer.alloc(100_000, 'partial line\n'));
        // Once the tmp/ file holds data, the message is half delivered: interrupt it there.
        const poll = setInterval(() => {
          const tmp = path.join(md, 'tmp');
          const files = fs.existsSync(tmp) ? fs.readdirSync(tmp) : [];
          if (files.length === 1 && fs.statSync(path.join(tmp, files[0])).size > 0) {
            clearInterval(poll);
            child.kill(sig);
          }
        }, 5);
        child.once('exit', () => clearInterval(poll));
      },
    });
    assertFails(r, 75, new RegExp(`^popmda: interrupted by ${sig}, nothing delivered, will retry$`));
    assert.deepEqual(ls(md, 'tmp'), []);
    assert.deepEqual(ls(md, 'new'), []);
  }
});

test('refuses to run as root (75: the mail stays queued while the operator fixes smtpd.conf)', { skip: !isRoot && 'not root' }, async () => {
  const md = path.join(scratchDir(), 'Maildir');
  assertFails(await popmda(['-m', md], { input: 'x\n', asRoot: true }), 75, /^popmda: refusing to run as root/);
  assert.ok(!fs.existsSync(md), 'nothing created');
});

test('-E adds Return-Path and Delivered-To from the environment, stripping CR, LF and other controls', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  const deliverWith = async (args: string[], env: NodeJS.ProcessEnv): Promise<string> => {
    const before = new Set(fs.existsSync(path.join(md, 'new')) ? ls(md, 'new') : []);
    const r = await popmda(['-m', md, ...args], { input: 'Subject: hi\n\nbody\n', env: { SENDER: undefined, RECIPIENT: undefined, ORIGINAL_RECIPIENT: undefined, ...env } });
    assert.equal(r.status, 0, r.stderr);
    const added = ls(md, 'new').filter((f) => !before.has(f));
    assert.equal(added.length, 1);
    return fs.readFileSync(path.join(md, 'new', added[0]), 'latin1');
  };
  assert.equal(await deliverWith(['-E'], { SENDER: 'a@example.org', RECIPIENT: 'b@example.net' }), 'Return-Path: <a@example.org>\nDelivered-To: b@example.net\nSubject: hi\n\nbody\n');
  assert.equal(await deliverWith(['-E'], { SENDER: 'a@x', RECIPIENT: 'alias@x', ORIGINAL_RECIPIENT: 'orig@x' }), 'Return-Path: <a@x>\nDelivered-To: orig@x\nSubject: hi\n\nbody\n');
  assert.equal(await deliverWith(['-E'], { SENDER: '', RECIPIENT: 'b@x' }), 'Return-Path: <>\nDelivered-To: b@x\nSubject: hi\n\nbody\n', 'a bounce has the null sender');
  assert.equal(
    await deliverWith(['-E'], { SENDER: 'evil@x>\r\nX-Injected: yes\r\n\r\n<', RECIPIENT: 'b@x\nBcc: c@x\x1b\x7f\t' }),
    'Return-Path: <evil@x>X-Injected: yes<>\nDelivered-To: b@xBcc: c@x\nSubject: hi\n\nbody\n',
    'no header can be smuggled in',
  );
  assert.equal(await deliverWith([], { SENDER: 'a@x', RECIPIENT: 'b@x' }), 'Subject: hi\n\nbody\n', 'without -E the environment is ignored');
  assert.equal(await deliverWith(['-E', '-f', 'f@x', '-r', 'r@x'], { SENDER: 'a@x', RECIPIENT: 'b@x' }), 'Return-Path: <f@x>\nDelivered-To: r@x\nSubject: hi\n\nbody\n', '-f and -r win over the environment');
  assert.equal(await deliverWith(['-f', 's\r\n@x'], {}), 'Return-Path: <s@x>\nSubject: hi\n\nbody\n');
  for (const l of readPopcacheLines(md)) {
    const f = ls(md, 'new').find((n) => n === l.name)!;
    assert.equal(l.octets, referenceWireSize(fs.readFileSync(path.join(md, 'new', f))), 'the headers count in the octets');
  }
});
