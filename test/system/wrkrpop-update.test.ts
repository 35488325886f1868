/**
 * UPDATE and the maildrop lock with real processes: deletions only on QUIT,
 * a kill -9 in the middle of UPDATE, removals that fail, a second session,
 * and real popmda deliveries while a session holds the mailbox.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, run } from '../lib/util';
import { seedMaildir, uidlOf, wireOctets, removeSeeded } from '../lib/maildirs';
import { login, quit, killWorkers } from '../lib/worker';

after(() => {
  killWorkers();
  removeSeeded();
});

const bodies = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => Buffer.from(`Subject: m${i + 1}\n\nbody of message ${i + 1}\n`));

const uniqueOf = (file: string): string => file.split(':')[0];
const curUniques = (dir: string): string[] => fs.readdirSync(path.join(dir, 'cur')).map(uniqueOf).sort();
const popcacheNames = (dir: string): string[] =>
  fs
    .readFileSync(path.join(dir, 'popcache'), 'latin1')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(' ')[0])
    .sort();

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 10));
}

/** Logs in and checks that the session sees exactly the files of cur/, with their sizes and UIDLs. */
async function assertConsistent(dir: string, contents: Map<string, Buffer>): Promise<number> {
  const w = await login(dir);
  const files = curUniques(dir);
  const total = files.reduce((s, u) => s + wireOctets(contents.get(u)!), 0);
  assert.equal(w.greeting, `+OK alice has ${files.length} messages (${total} octets)`);
  w.pop.send('UIDL');
  const uidls = (await w.pop.reply(true)).body!.toString().split('\r\n').slice(0, -1).map((l) => l.split(' ')[1]);
  assert.deepEqual(uidls.sort(), files.map(uidlOf).sort());
  await quit(w);
  assert.deepEqual(popcacheNames(dir), files, 'popcache lists exactly the files that remain');
  return files.length;
}

test('DELE+QUIT removes; DELE+RSET+QUIT keeps; DELE then EOF or kill keeps', async () => {
  const all = bodies(4);
  const s = seedMaildir(all);
  const contents = new Map(s.uniques.map((u, i) => [u, all[i]]));
  let w = await login(s.dir);
  assert.equal(await w.pop.cmd('DELE 1'), '+OK message 1 deleted');
  assert.equal(await w.pop.cmd('DELE 3'), '+OK message 3 deleted');
  assert.deepEqual(await quit(w), { answer: '+OK 2 messages deleted, 2 left', code: 0 });
  assert.deepEqual(curUniques(s.dir), [s.uniques[1], s.uniques[3]].sort());
  assert.equal(await assertConsistent(s.dir, contents), 2);

  w = await login(s.dir);
  await w.pop.cmd('DELE 1');
  assert.equal(await w.pop.cmd('RSET'), `+OK maildrop has 2 messages (${wireOctets(all[1]) + wireOctets(all[3])} octets)`);
  assert.deepEqual(await quit(w), { answer: '+OK 0 messages deleted, 2 left', code: 0 });

  w = await login(s.dir);
  await w.pop.cmd('DELE 1');
  w.io.end();
  assert.equal((await w.exited).code, 0);

  w = await login(s.dir);
  await w.pop.cmd('DELE 2');
  w.child.kill('SIGKILL');
  await w.exited;
  assert.equal(await assertConsistent(s.dir, contents), 2);
});

test('kill -9 during UPDATE leaves a maildir the next login reads correctly', async () => {
  const all = bodies(3000);
  const s = seedMaildir(all);
  const contents = new Map(s.uniques.map((u, i) => [u, all[i]]));
  const w = await login(s.dir);
  // The session moves what it found in new/ to cur/ after its +OK: wait for that, so that the watcher sees UPDATE.
  await until(() => fs.readdirSync(path.join(s.dir, 'new')).length === 0);
  const killed = new Promise<void>((resolve) => {
    // The first removal in cur/ means UPDATE has begun.
    const watcher = fs.watch(path.join(s.dir, 'cur'), () => {
      w.child.kill('SIGKILL');
      watcher.close();
      resolve();
    });
  });
  w.pop.sendRaw(Array.from({ length: 2000 }, (_, i) => `DELE ${i + 1}\r\n`).join('') + 'QUIT\r\n');
  await killed;
  assert.equal((await w.exited).signal, 'SIGKILL');
  const left = curUniques(s.dir).length;
  console.log(`killed with ${3000 - left} of 2000 removals done`);
  assert.ok(left >= 1000 && left <= 3000);
  assert.equal(await assertConsistent(s.dir, contents), left);
  for (const u of s.uniques.slice(2000)) assert.ok(curUniques(s.dir).includes(u), 'an undeleted message was lost');
});

test('removals that fail: -ERR [SYS/TEMP] with the count, popcache still matches the files', async () => {
  const all = bodies(3);
  const s = seedMaildir(all);
  const w = await login(s.dir);
  await w.pop.cmd('DELE 1');
  await w.pop.cmd('DELE 2');
  // Message 2's name now holds a non-empty directory: unlink(2) fails.
  const f2 = path.join(s.dir, 'cur', `${s.uniques[1]}:2,`);
  fs.unlinkSync(f2);
  fs.mkdirSync(f2);
  fs.writeFileSync(path.join(f2, 'x'), 'x');
  assert.deepEqual(await quit(w), { answer: '-ERR [SYS/TEMP] 1 of 2 messages could not be deleted', code: 0 });
  assert.deepEqual(curUniques(s.dir), [s.uniques[1], s.uniques[2]].sort());
  assert.deepEqual(popcacheNames(s.dir), [s.uniques[1], s.uniques[2]].sort());
  assert.ok(w.logs.some((l) => l.level === 'err' && /1 of 2 messages could not be removed/.test(l.msg)));
  assert.ok(w.logs.some((l) => /ended=quit .*deleted=1 undeleted=1/.test(l.msg)));
});

test('a second session on the same maildir gets -ERR [IN-USE]; the first is unaffected', async () => {
  const s = seedMaildir(bodies(2));
  const first = await login(s.dir);
  const second = await login(s.dir);
  assert.match(second.greeting, /^-ERR \[IN-USE\] /);
  assert.equal((await second.exited).code, 0);
  assert.ok(second.logs.some((l) => /ended=in-use/.test(l.msg)), JSON.stringify(second.logs));
  assert.equal((await second.pop.rest()).length, 0, 'nothing after the refusal');
  assert.equal(await first.pop.cmd('STAT'), `+OK 2 ${wireOctets(bodies(2)[0]) + wireOctets(bodies(2)[1])}`);
  await quit(first);
  const third = await login(s.dir);
  assert.match(third.greeting, /^\+OK alice has 2 messages/);
  await quit(third);
});

test('popmda deliveries during a session succeed at once and show up next time with new UIDLs; old UIDLs stay', async () => {
  const old = bodies(2);
  const s = seedMaildir(old);
  const w = await login(s.dir);
  w.pop.send('UIDL');
  const before = (await w.pop.reply(true)).body!.toString();
  const fresh = ['one', 'two', 'three'].map((x) => `Subject: new ${x}\n\nnew mail ${x}\n`);
  for (const m of fresh) {
    const r = await run(BIN.popmda, ['-m', s.dir], { input: m });
    assert.equal(r.status, 0, r.stderr);
  }
  assert.equal(fs.readdirSync(path.join(s.dir, 'new')).length, 3);
  assert.match(await w.pop.cmd('STAT'), /^\+OK 2 /, 'a session does not see mail delivered during it');
  assert.equal(await w.pop.cmd('DELE 1'), '+OK message 1 deleted');
  await quit(w);
  const again = await login(s.dir);
  assert.match(again.greeting, /^\+OK alice has 4 messages/);
  again.pop.send('UIDL');
  const after = (await again.pop.reply(true)).body!.toString().split('\r\n').slice(0, -1);
  assert.equal(after[0], before.split('\r\n')[1].replace(/^2 /, '1 '), 'the old message keeps its UIDL');
  const newNames = curUniques(s.dir).filter((u) => !s.uniques.includes(u));
  assert.equal(newNames.length, 3);
  assert.deepEqual(after.slice(1).map((l) => l.split(' ')[1]).sort(), newNames.map(uidlOf).sort());
  const got: string[] = [];
  for (let i = 2; i <= 4; i++) {
    again.pop.send(`RETR ${i}`);
    got.push((await again.pop.reply(true)).body!.toString());
  }
  for (const m of fresh) assert.ok(got.some((g) => g.endsWith(m.replace(/\n/g, '\r\n'))), m);
  await quit(again);
});

test('kill -9 while a first session moves 3,000 messages from new/ to cur/, with popmda delivering meanwhile: nothing lost, UIDLs unchanged', { timeout: 60_000 }, async () => {
  const all = bodies(3000);
  const s = seedMaildir(all);
  // The move's first slice runs before the greeting; the rest waits until the client has been silent QUIET_MS.
  // Four UIDLs, in the worker's input before its greeting: it answers them one after the other without waiting
  // for the client, and answers 2 to 4 (3 x 213 KB) cannot all fit in the socketpair and our socket's buffer
  // (213 KB together, measured), so the move cannot resume until we read them, after the watcher is set.
  const w = await login(s.dir, {}, 'UIDL\r\n'.repeat(4));
  assert.match(w.greeting, /^\+OK alice has 3000 messages/);
  const uidls = (await w.pop.reply(true)).body!.toString();
  assert.equal(uidls, s.uniques.map((u, i) => `${i + 1} ${uidlOf(u)}\r\n`).join(''));
  assert.ok(fs.readdirSync(path.join(s.dir, 'new')).length > 0, 'the first slice of the move left messages in new/');
  // The move goes on once the client is silent: killed at its next rename.
  const killed = new Promise<number>((resolve) => {
    const watcher = fs.watch(path.join(s.dir, 'cur'), () => {
      w.child.kill('SIGKILL');
      watcher.close();
      resolve(fs.readdirSync(path.join(s.dir, 'new')).length);
    });
  });
  const fresh = ['one', 'two', 'three'].map((x) => `Subject: during the move ${x}\n\nnew mail ${x}\n`);
  const delivered = Promise.all(fresh.map((m) => run(BIN.popmda, ['-m', s.dir], { input: m })));
  for (let i = 0; i < 3; i++) assert.equal((await w.pop.reply(true)).body!.toString(), uidls);
  console.log(`killed with ${await killed} files in new/`);
  assert.equal((await w.exited).signal, 'SIGKILL');
  for (const r of await delivered) assert.equal(r.status, 0, r.stderr);
  const inMaildir = (): string[] => ['new', 'cur'].flatMap((d) => fs.readdirSync(path.join(s.dir, d)).map(uniqueOf)).sort();
  assert.equal(inMaildir().length, 3003);
  // The next session serves every message, the old ones under the UIDLs they had.
  const again = await login(s.dir);
  assert.match(again.greeting, /^\+OK alice has 3003 messages/);
  again.pop.send('UIDL');
  const after = (await again.pop.reply(true)).body!.toString();
  assert.ok(after.startsWith(uidls), 'the old messages keep their numbers and UIDLs');
  assert.deepEqual(
    after.split('\r\n').slice(0, -1).map((l) => l.split(' ')[1]).sort(),
    inMaildir().map(uidlOf).sort(),
  );
  // Left alone, it moves everything, the new mail included.
  await until(() => fs.readdirSync(path.join(s.dir, 'new')).length === 0);
  await quit(again);
  assert.equal(curUniques(s.dir).length, 3003);
  assert.deepEqual(popcacheNames(s.dir), curUniques(s.dir));
});
