/**
 * wrkrpop's start-up: the one start message, confinement (chroot and drop as
 * root, the uid check unprivileged), and the refusals. Root-only checks look
 * at the running worker through /proc.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { MAILUSER, isRoot, tmpdir } from '../lib/util';
import { seedMaildir, removeSeeded } from '../lib/maildirs';
import { login, quit, spawnWorker, start, startMessages, killWorkers } from '../lib/worker';

after(() => {
  killWorkers();
  removeSeeded();
});

const body = Buffer.from('Subject: s\n\nhello\n');

test('as root: target uid/gid, no other groups, root is the maildir, no descriptor leads outside', { skip: !isRoot && 'needs root (chroot and setuid)' }, async () => {
  const s = seedMaildir([body]);
  const w = await login(s.dir);
  assert.match(w.greeting, /^\+OK alice has 1 messages/);
  const pid = w.child.pid!;
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): string[] => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)![1].trim().split(/\s+/).filter((x) => x !== '');
  assert.deepEqual(field('Uid'), Array(4).fill(String(MAILUSER.uid)));
  assert.deepEqual(field('Gid'), Array(4).fill(String(MAILUSER.gid)));
  assert.ok(field('Groups').every((g) => g === String(MAILUSER.gid)), `Groups: ${field('Groups')}`);
  assert.equal(fs.readlinkSync(`/proc/${pid}/root`), fs.realpathSync(s.dir));
  assert.equal(fs.readlinkSync(`/proc/${pid}/cwd`), fs.realpathSync(s.dir));
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const ok = /^(socket|pipe|anon_inode):/.test(target) || target === '/dev/null' || target.startsWith(fs.realpathSync(s.dir) + '/');
    assert.ok(ok, `fd ${fd} -> ${target}`);
  }
  // A message swapped for a link to a file outside: the chrooted, dropped worker serves nothing of it.
  const secret = path.join(path.dirname(s.dir), 'outside');
  fs.writeFileSync(secret, 'outside the maildir\n', { mode: 0o644 });
  const file = path.join(s.dir, 'cur', `${s.uniques[0]}:2,`);
  fs.unlinkSync(file);
  fs.symlinkSync(secret, file);
  assert.match(await w.pop.cmd('RETR 1'), /^-ERR \[SYS\/PERM\]/);
  await quit(w);
});

test('refuses uid 0 and gid 0', async () => {
  const s = seedMaildir([body]);
  for (const ids of [{ uid: 0 }, { gid: 0 }]) {
    const w = await login(s.dir, ids);
    assert.match(w.greeting, /^-ERR \[SYS\/PERM\] /);
    assert.equal((await w.exited).code, 77);
    assert.ok(w.logs.some((l) => l.level === 'err' && /refusing uid or gid 0/.test(l.msg)));
  }
});

test('unprivileged mode serves only the uid it runs as', async () => {
  const s = seedMaildir([body]);
  const other = isRoot ? MAILUSER.uid : process.getuid!() + 1;
  const w = await login(s.dir, { drop: false, uid: other });
  assert.match(w.greeting, /^-ERR \[SYS\/PERM\] /);
  assert.equal((await w.exited).code, 77);
  assert.ok(w.logs.some((l) => /unprivileged mode: uid \d+ asked/.test(l.msg)));
});

test('asked to drop privileges without being root: refused', { skip: isRoot && 'runs as root' }, async () => {
  const s = seedMaildir([body]);
  const w = await login(s.dir, { drop: true });
  assert.match(w.greeting, /^-ERR \[SYS\/PERM\] /);
  assert.ok(w.logs.some((l) => /not running as root/.test(l.msg)));
});

test('a missing maildir: -ERR [SYS/TEMP], and the log says which', async () => {
  const dir = path.join(tmpdir(), 'nonexistent');
  const w = await login(dir);
  assert.match(w.greeting, /^-ERR \[SYS\/TEMP\] /);
  // As root the confinement fails (a refused worker exits 77); unprivileged the session is refused and the worker
  // goes on: a worker outlives its sessions, so the exit status is no session's.
  const { code } = await w.exited;
  if (isRoot) assert.equal(code, 77);
  assert.ok(w.logs.some((l) => l.level === 'err' && l.msg.includes(dir) && /does not exist/.test(l.msg)), JSON.stringify(w.logs));
});

test('a malformed session message: the worker exits without reading or writing the socket', async () => {
  const w = spawnWorker();
  const [confine, session] = startMessages('/tmp');
  w.send(confine);
  w.send({ ...session, user: 'two words' }, w.sessionFd!);
  fs.closeSync(w.sessionFd!);
  // Closed here: killWorkers must not close the number again (by then another descriptor may have it).
  w.sessionFd = null;
  assert.equal((await w.exited).code, 70);
  assert.equal((await w.pop.rest()).length, 0);
  assert.ok(w.logs.some((l) => l.level === 'err' && /invalid session message/.test(l.msg)));
});

test('a malformed confine message or another protocol version: the worker exits 70 and says why', async () => {
  for (const [bad, why] of [
    [{ root: 'relative' }, /invalid confine message/],
    [{ v: 1 }, /popd speaks protocol 1, this wrkrpop \d+/],
  ] as const) {
    const w = spawnWorker();
    w.send({ ...startMessages('/tmp')[0], ...bad });
    assert.equal((await w.exited).code, 70);
    assert.ok(w.logs.some((l) => l.level === 'err' && why.test(l.msg)), JSON.stringify(w.logs));
  }
});

test('a warm spare: bytes pipelined before the start message wait, and are answered after the greeting', async () => {
  const s = seedMaildir([body]);
  const w = spawnWorker();
  w.pop.sendRaw('STAT\r\nQUIT\r\n');
  await new Promise((r) => setTimeout(r, 300));
  start(w, s.dir);
  assert.match(await w.pop.line(), /^\+OK alice has 1 messages/);
  assert.match(await w.pop.line(), /^\+OK 1 /);
  assert.equal(await w.pop.line(), '+OK 0 messages deleted, 1 left');
  assert.equal((await w.exited).code, 0);
});

test('popd going away before the start message: the spare exits quietly', async () => {
  const w = spawnWorker();
  await new Promise((r) => setTimeout(r, 200));
  w.channel.close();
  assert.deepEqual(await w.exited, { code: 0, signal: null });
});
