/**
 * The maildir store in process: deliver, openMailbox's reconciliation of a
 * hostile or corrupt maildir, ordering, tmp/ cleanup, locks held by other
 * processes, and commitDeletions keeping lines of deliveries made during a
 * session.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { commitDeletions, compareMessages, countWireOctets, deliver, inDeliveryOrder, markSeen, Message, moveToCur, openMailbox } from '@popd/store/maildir';
import { TMP_MAX_AGE_MS } from '@popd/shared/params';
import { MAILDROP_LOCK, POPCACHE_LOCK } from '@popd/store/lock';
import { isTransient } from '@popd/store/fsutil';
import { withSizes } from '@popd/store/uniquename';
import { INPUTS, ls, readPopcacheLines, referenceWire, removeScratchDirs, scratchDir, sha256 } from '../lib/store';
import { isRoot } from '../lib/util';

after(removeScratchDirs);

const hasMkfifo = spawnSync('mkfifo', ['--version']).status === 0;

/** Writes a message straight into cur/ under a name of our choosing (what another MDA or a hostile user could do). */
function put(maildir: string, file: string, data: string | Buffer): void {
  fs.writeFileSync(path.join(maildir, 'cur', file), data);
}

/** Checks that popcache lists exactly these unique names with their reference octets, uidl = sha256(name). */
function assertPopcacheMatches(maildir: string, expected: Map<string, Buffer>): void {
  const lines = readPopcacheLines(maildir);
  assert.deepEqual(lines.map((l) => l.name).sort(), [...expected.keys()].sort());
  for (const l of lines) {
    assert.equal(l.uidl, sha256(l.name), l.name);
    assert.equal(l.octets, referenceWire(expected.get(l.name)!).length, l.name);
  }
}

test('deliver stores every input byte for byte, with S= and W= and a popcache line equal to the reference', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  const expected = new Map<string, Buffer>();
  for (const { name, data } of INPUTS) {
    // Fed in odd-sized chunks, as a pipe would.
    const chunks: Buffer[] = [];
    for (let i = 0; i < data.length; i += 4093) chunks.push(data.subarray(i, i + 4093));
    const d = await deliver(md, Readable.from(chunks));
    assert.equal(d.indexed, true, name);
    const stored = fs.readFileSync(path.join(md, 'new', d.name));
    assert.ok(stored.equals(data), `${name}: stored bytes differ`);
    assert.equal(d.size, data.length, name);
    assert.equal(d.octets, referenceWire(data).length, name);
    assert.ok(d.name.endsWith(`,S=${data.length},W=${referenceWire(data).length}`), d.name);
    assert.equal((await countWireOctets(path.join(md, 'new', d.name))).octets, d.octets, `${name}: countWireOctets`);
    expected.set(d.name, data);
  }
  assert.deepEqual(ls(md, 'tmp'), []);
  for (const sub of ['', 'cur', 'new', 'tmp']) assert.equal(fs.statSync(path.join(md, sub)).mode & 0o777, 0o700, `${sub || '.'} mode`);
  assertPopcacheMatches(md, expected);
  // A prefix (popmda's trace headers) is part of the message and of its sizes.
  const p = await deliver(md, Readable.from([Buffer.from('body\n')]), { prefix: Buffer.from('Delivered-To: x\n') });
  assert.equal(fs.readFileSync(path.join(md, 'new', p.name), 'latin1'), 'Delivered-To: x\nbody\n');
  assert.equal(p.octets, 23);
});

test('a failing input stream leaves nothing in tmp/ or new/ and no popcache line', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  await deliver(md, Readable.from([Buffer.from('first\n')]));
  const before = fs.readFileSync(path.join(md, 'popcache'));
  async function* broken(): AsyncGenerator<Buffer> {
    yield Buffer.alloc(100_000, 0x61);
    throw Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
  }
  await assert.rejects(deliver(md, broken()), /connection reset/);
  assert.deepEqual(ls(md, 'tmp'), []);
  assert.equal(ls(md, 'new').length, 1);
  assert.ok(fs.readFileSync(path.join(md, 'popcache')).equals(before));
});

test('popcache lock held by another process: delivery times out as a temporary failure with nothing left behind', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  await deliver(md, Readable.from([Buffer.from('first\n')]));
  const holder = await holdLock(path.join(md, POPCACHE_LOCK));
  try {
    const err = await deliver(md, Readable.from([Buffer.from('second\n')]), { lockTimeoutMs: 300 }).then(
      () => assert.fail('delivered despite the lock'),
      (e: unknown) => e,
    );
    assert.equal((err as NodeJS.ErrnoException).code, 'ELOCKED');
    assert.ok(isTransient(err), 'a lock timeout is transient (popmda exits 75)');
    assert.equal(ls(md, 'new').length, 1);
    assert.deepEqual(ls(md, 'tmp'), []);
    assert.equal(readPopcacheLines(md).length, 1);
  } finally {
    await holder.release();
  }
  await deliver(md, Readable.from([Buffer.from('third\n')]));
  assert.equal(readPopcacheLines(md).length, 2);
});

test('a POP session holding the maildrop lock does not delay delivery; its deletions keep lines appended meanwhile', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  const a = await deliver(md, Readable.from([Buffer.from('a\n')]));
  const b = await deliver(md, Readable.from([Buffer.from('bb\n')]));
  // The session's lock, held by another process as wrkrpop would.
  const session = await holdLock(path.join(md, MAILDROP_LOCK));
  const box = await openMailbox(md);
  assert.deepEqual(
    box.messages.map((m) => m.unique),
    [a.name, b.name],
  );
  assert.equal(box.inNew, 2);
  const c = await deliver(md, Readable.from([Buffer.from('ccc\n')]), { lockTimeoutMs: 2000 });
  assert.equal(c.indexed, true);
  // The session moves what it listed, after its +OK and without the popcache lock: not the message delivered since.
  assert.equal(await moveToCur(md, box.messages), 2);
  assert.deepEqual(ls(md, 'new'), [c.name]);
  const res = await commitDeletions(md, [box.messages[0]]);
  assert.deepEqual(res, { removed: 1, failed: 0 });
  await session.release();
  assert.deepEqual(
    readPopcacheLines(md).map((l) => l.name),
    [b.name, c.name],
  );
  const next = await openMailbox(md);
  assert.deepEqual(
    next.messages.map((m) => [m.unique, m.octets]),
    [
      [b.name, 4],
      [c.name, 5],
    ],
  );
  assert.equal(next.counted, 0);
});

test('corrupt popcache reconciles to exactly the files in cur/ (garbage, truncated, wrong uidl, missing files, unindexed files, duplicates)', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  fs.mkdirSync(md);
  for (const d of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(md, d));
  const msgs = new Map<string, Buffer>();
  const add = (unique: string, file: string, data: string): void => {
    put(md, file, data);
    msgs.set(unique, Buffer.from(data, 'latin1'));
  };
  const n = (i: number, body: string): string => withSizes(`17000000${String(i).padStart(2, '0')}.M${i}P1R${i}.h`, body.length, referenceWire(Buffer.from(body)).length);
  const bodies = ['one\n', 'two\r\n', 'three', '', 'five\n\n'];
  bodies.forEach((body, i) => add(n(i, body), `${n(i, body)}:2,${i % 2 ? 'S' : ''}`, body));
  add('foreign.name.without.sizes', 'foreign.name.without.sizes:2,S', 'x\ny\n');
  add('1700000100.plain', '1700000100.plain', 'no info suffix\n'); // no ":2," at all
  const gone = n(50, 'gone\n');
  const lines = [
    `${n(0, bodies[0])} 5 ${sha256(n(0, bodies[0]))}`,
    `${n(0, bodies[0])} 5 ${sha256(n(0, bodies[0]))}`, // duplicate
    '\0\xff garbage \x01',
    `${n(1, bodies[1])} 5 ${sha256('wrong')}`, // wrong uidl
    `${gone} 6 ${sha256(gone)}`, // entry for a missing file
    '',
    `${n(2, bodies[2])} 7 ${sha256(n(2, bodies[2]))}`,
    `${n(3, bodies[3])} 0 ${sha256(n(3, bodies[3])).slice(0, 17)}`, // truncated at the end
  ];
  fs.writeFileSync(path.join(md, 'popcache'), lines.join('\n'), 'latin1');
  const box = await openMailbox(md);
  assert.equal(box.rewritten, true);
  assert.deepEqual(box.messages.map((m) => m.unique).sort(), [...msgs.keys()].sort());
  for (const m of box.messages) {
    assert.equal(m.octets, referenceWire(msgs.get(m.unique)!).length, m.unique);
  }
  assert.equal(box.counted, 2, 'only the two names without W= are read');
  assertPopcacheMatches(md, msgs);
  const again = await openMailbox(md);
  assert.equal(again.rewritten, false, 'a reconciled popcache is left alone');
  assert.deepEqual(again.messages, box.messages);
  assert.equal(again.counted, 0, 'sizes the names lack come from popcache');
});

test('two files for one unique name (copies with other flags) are served once, the first listed, with or without a time in the name', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  fs.mkdirSync(md);
  for (const d of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(md, d));
  const files = ['1700000001.M1P1R1.h:2,', '1700000001.M1P1R1.h:2,S', 'foreign:2,', 'foreign:2,S', '1700000002.M1P1R1.h:2,'];
  for (const f of files) put(md, f, 'x\n');
  // The untimed copies are ordered by mtime: put another message between them.
  fs.utimesSync(path.join(md, 'cur', 'foreign:2,'), 1600000000, 1600000000);
  fs.utimesSync(path.join(md, 'cur', 'foreign:2,S'), 1800000000, 1800000000);
  const listed = fs.readdirSync(path.join(md, 'cur'));
  const box = await openMailbox(md);
  assert.deepEqual(
    box.messages.map((m) => m.unique),
    ['foreign', '1700000001.M1P1R1.h', '1700000002.M1P1R1.h'],
  );
  for (const m of box.messages) assert.equal(m.file, listed.find((f) => f.startsWith(m.unique + ':')), m.unique);
  assert.deepEqual(readPopcacheLines(md).map((l) => l.name).sort(), ['1700000001.M1P1R1.h', '1700000002.M1P1R1.h', 'foreign']);
});

test('popcache is left alone only when it holds exactly the messages of cur/, in order; any other file is rewritten so', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  const names: string[] = [];
  for (let i = 0; i < 4; i++) names.push((await deliver(md, Readable.from([Buffer.from(`message ${i}\n`)]))).name);
  put(md, 'foreign:2,', 'no sizes in this name\n');
  const first = await openMailbox(md);
  assert.equal(first.rewritten, true);
  const canonical = fs.readFileSync(path.join(md, 'popcache'), 'latin1');
  const lines = canonical.split('\n').slice(0, -1);
  assert.equal(lines.length, 5);
  const variants: [string, string][] = [
    ['two lines swapped', [lines[1], lines[0], ...lines.slice(2)].join('\n') + '\n'],
    ['a line missing', lines.slice(1).join('\n') + '\n'],
    ['a line for a missing file', canonical + `1.gone 5 ${sha256('1.gone')}\n`],
    ['a truncated last line', canonical + lines[0].slice(0, 20)],
    ['a duplicate line', canonical + lines[4] + '\n'],
    ['octets off by one', canonical.replace(/ (\d+) /, (_, o: string) => ` ${Number(o) + 1} `)],
    ['a name longer by one character', canonical.replace(' ', 'x ')],
    ["another name's uidl", canonical.replace(/[0-9a-f]{64}\n/, `${sha256('other')}\n`)],
    ['a corrupt uidl', canonical.replace(/[0-9a-f]{64}\n/, `${'G'.repeat(64)}\n`)],
    ['empty', ''],
  ];
  for (const [what, text] of variants) {
    fs.writeFileSync(path.join(md, 'popcache'), text, 'latin1');
    const box = await openMailbox(md);
    assert.equal(box.rewritten, true, what);
    assert.deepEqual(box.messages, first.messages, what);
    assert.equal(fs.readFileSync(path.join(md, 'popcache'), 'latin1'), canonical, what);
    assert.equal((await openMailbox(md)).rewritten, false, `${what}: then left alone`);
  }
});

test('a W= that lies: popcache holds the counted size, which is kept; the file is counted at each login', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  fs.mkdirSync(md);
  for (const d of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(md, d));
  const unique = '1700000000.M1P1R1.h,S=6,W=99';
  put(md, `${unique}:2,`, 'abc\nd\n');
  fs.writeFileSync(path.join(md, 'popcache'), `${unique} 8 ${sha256(unique)}\n`);
  for (let i = 0; i < 2; i++) {
    const box = await openMailbox(md);
    assert.deepEqual(box.messages.map((m) => m.octets), [8]);
    assert.equal(box.counted, 1);
    assert.equal(box.rewritten, false, `login ${i + 1}`);
  }
});

test('popcache octets that disagree with the name W= are recounted from the file', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  const d = await deliver(md, Readable.from([Buffer.from('abc\ndef\n')]));
  fs.writeFileSync(path.join(md, 'popcache'), `${d.name} 999 ${sha256(d.name)}\n`);
  const box = await openMailbox(md);
  assert.equal(box.messages[0].octets, 10);
  assert.equal(box.counted, 1);
  assert.deepEqual(readPopcacheLines(md), [{ name: d.name, octets: 10, uidl: sha256(d.name) }]);
});

test('hostile maildir entries are never served and never stop a login', { skip: !hasMkfifo && 'mkfifo is not installed' }, async () => {
  const md = path.join(scratchDir(), 'Maildir');
  const ok = await deliver(md, Readable.from([Buffer.from('real\n')]));
  const outside = path.join(path.dirname(md), 'secret');
  fs.writeFileSync(outside, 'not mail\n');
  fs.symlinkSync(outside, path.join(md, 'cur', '1700000000.link:2,'));
  fs.symlinkSync(outside, path.join(md, 'new', '1700000001.link'));
  fs.mkdirSync(path.join(md, 'cur', '1700000002.dir:2,'));
  spawnSync('mkfifo', [path.join(md, 'cur', '1700000003.fifo:2,')]);
  put(md, '.hidden:2,', 'x\n');
  put(md, 'has space:2,', 'x\n');
  put(md, ':2,S', 'empty unique name\n');
  // new/X cannot move to cur/X:2, because a directory has that name: it is served from new/ and stays there.
  fs.writeFileSync(path.join(md, 'new', '1700000004.blocked'), 'x\n');
  fs.mkdirSync(path.join(md, 'cur', '1700000004.blocked:2,'));
  // popcache itself a FIFO: reading it must not hang.
  fs.rmSync(path.join(md, 'popcache'));
  spawnSync('mkfifo', [path.join(md, 'popcache')]);
  const box = await openMailbox(md);
  assert.deepEqual(
    box.messages.map((m) => m.unique),
    ['1700000004.blocked', ok.name],
  );
  assert.ok(fs.lstatSync(path.join(md, 'popcache')).isFile(), 'the FIFO was replaced by a real popcache');
  assert.deepEqual(
    readPopcacheLines(md).map((l) => l.name),
    ['1700000004.blocked', ok.name],
  );
  assert.equal(await moveToCur(md, box.messages), 1, 'the blocked one stays, the next one moves');
  assert.deepEqual(ls(md, 'new'), ['1700000001.link', '1700000004.blocked'], 'the symlink is never moved either');
  assert.equal(fs.readFileSync(outside, 'utf8'), 'not mail\n');
  // popcache a symlink to a file elsewhere: neither followed for reading nor written through.
  fs.rmSync(path.join(md, 'popcache'));
  fs.symlinkSync(outside, path.join(md, 'popcache'));
  const d2 = await deliver(md, Readable.from([Buffer.from('two\n')]));
  assert.equal(d2.indexed, false, 'the append refused to follow the symlink');
  assert.equal(fs.readFileSync(outside, 'utf8'), 'not mail\n');
  const box2 = await openMailbox(md);
  assert.deepEqual(
    box2.messages.map((m) => m.unique),
    ['1700000004.blocked', ok.name, d2.name],
  );
  assert.ok(fs.lstatSync(path.join(md, 'popcache')).isFile());
  assert.equal(fs.readFileSync(outside, 'utf8'), 'not mail\n');
});

test('order: delivery time from the name (seconds, then microseconds), ties broken by name, readdir order irrelevant', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  for (const d of ['', 'cur', 'new', 'tmp']) fs.mkdirSync(path.join(md, d));
  const names = [
    '1700000002.M5P1R1.h,S=2,W=3', // later second, small microseconds
    '1700000001.M999999P1R1.h,S=2,W=3',
    '1700000001.M10P1Rb.h,S=2,W=3', // tie on time: by name
    '1700000001.M10P1Ra.h,S=2,W=3',
    '1700000001.M9P9R9.h,S=2,W=3', // 9 < 10 microseconds although "9" > "1" as text
  ];
  for (const name of names) put(md, `${name}:2,`, 'x\n');
  const box = await openMailbox(md);
  assert.deepEqual(
    box.messages.map((m) => m.unique),
    ['1700000001.M9P9R9.h,S=2,W=3', '1700000001.M10P1Ra.h,S=2,W=3', '1700000001.M10P1Rb.h,S=2,W=3', '1700000001.M999999P1R1.h,S=2,W=3', '1700000002.M5P1R1.h,S=2,W=3'],
  );
  assert.deepEqual(
    readPopcacheLines(md).map((l) => l.name),
    box.messages.map((m) => m.unique),
    'popcache is written in delivery order',
  );
  // Deliveries in one process keep their order even within one millisecond.
  const md2 = path.join(scratchDir(), 'Maildir');
  const delivered: string[] = [];
  for (let i = 0; i < 30; i++) delivered.push((await deliver(md2, Readable.from([Buffer.from(`${i}\n`)]))).name);
  assert.deepEqual(
    (await openMailbox(md2)).messages.map((m) => m.unique),
    delivered,
  );
});

test('inDeliveryOrder equals a stable sort by compareMessages, with many messages sharing a time and a name', async () => {
  for (let round = 0; round < 20; round++) {
    const n = crypto.randomInt(0, 3000);
    const times = crypto.randomInt(1, 50);
    const listed: Message[] = Array.from({ length: n }, (_, i) => ({
      unique: `u${crypto.randomInt(0, 40)}`,
      dir: i % 2 ? 'cur' : 'new',
      file: `listed ${i}`,
      octets: i,
      time: 1_700_000_000_000_000 + crypto.randomInt(0, times) * 1_000_000,
    }));
    assert.deepEqual(await inDeliveryOrder(listed), [...listed].sort(compareMessages), `round ${round}`);
  }
});

test('messages found in new/ are served from there and keep their UIDL-giving name; RETR, DELE and QUIT find them wherever they are', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  const d: string[] = [];
  for (let i = 0; i < 5; i++) d.push((await deliver(md, Readable.from([Buffer.from(`message ${i}\n`)]))).name);
  const box = await openMailbox(md);
  assert.equal(box.inNew, 5);
  assert.deepEqual(
    box.messages.map((m) => [m.dir, m.file, m.unique]),
    d.map((name) => ['new', name, name]),
  );
  assert.deepEqual(ls(md, 'new'), [...d].sort(), 'opening moves nothing');
  const [m0, m1, m2, m3, m4] = box.messages;
  // RETR marks a message in new/ seen by moving it to cur/.
  markSeen(md, m0);
  assert.deepEqual([m0.dir, m0.file], ['cur', `${d[0]}:2,S`]);
  // Another program moves one to cur/ and sets a flag on it; another one is deleted by another program.
  fs.renameSync(path.join(md, 'new', d[2]), path.join(md, 'cur', `${d[2]}:2,F`));
  fs.unlinkSync(path.join(md, 'new', d[4]));
  assert.equal(await moveToCur(md, box.messages), 2, 'm1 and m3 moved, the others are not in new/');
  assert.deepEqual([m1.dir, m1.file], ['cur', `${d[1]}:2,`]);
  assert.equal(m2.dir, 'new', 'the one moved by another program is found again when needed');
  // DELE of every message, wherever it is now: all removed, popcache emptied.
  const r = await commitDeletions(md, [m0, m1, m2, m3, m4]);
  assert.deepEqual(r, { removed: 5, failed: 0 });
  assert.deepEqual([...ls(md, 'new'), ...ls(md, 'cur')], []);
  assert.deepEqual(readPopcacheLines(md), []);
});

test('a message still in new/ is removed by DELE and QUIT; one moved to cur/ by another program since login too', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  await deliver(md, Readable.from([Buffer.from('a\n')]));
  const b = await deliver(md, Readable.from([Buffer.from('b\n')]));
  const c = await deliver(md, Readable.from([Buffer.from('c\n')]));
  const box = await openMailbox(md);
  fs.renameSync(path.join(md, 'new', b.name), path.join(md, 'cur', `${b.name}:2,S`));
  assert.deepEqual(await commitDeletions(md, box.messages.slice(0, 2)), { removed: 2, failed: 0 });
  assert.deepEqual(ls(md, 'new'), [c.name]);
  assert.deepEqual(ls(md, 'cur'), []);
  assert.deepEqual(
    readPopcacheLines(md).map((l) => l.name),
    [c.name],
  );
});

test('tmp/ files and popcache temp files older than 36 hours are removed at login, younger ones kept', async () => {
  const md = path.join(scratchDir(), 'Maildir');
  await deliver(md, Readable.from([Buffer.from('x\n')]));
  const now = Date.now();
  const ages: Array<[string, number]> = [
    ['tmp/old', TMP_MAX_AGE_MS + 60_000],
    ['tmp/young', TMP_MAX_AGE_MS - 60_000],
    ['popcache.tmp.99999', TMP_MAX_AGE_MS + 60_000],
    ['popcache.tmp.99998', 1000],
  ];
  for (const [f, age] of ages) {
    fs.writeFileSync(path.join(md, f), 'partial');
    const t = new Date(now - age);
    fs.utimesSync(path.join(md, f), t, t);
  }
  await openMailbox(md, { now });
  assert.deepEqual(ls(md, 'tmp'), ['young']);
  assert.ok(!fs.existsSync(path.join(md, 'popcache.tmp.99999')));
  assert.ok(fs.existsSync(path.join(md, 'popcache.tmp.99998')));
  assert.equal((await openMailbox(md)).messages.length, 1);
});

test('unreadable file without W= is skipped, not fatal', { skip: isRoot && 'root reads mode 000 files' }, async () => {
  const md = path.join(scratchDir(), 'Maildir');
  const ok = await deliver(md, Readable.from([Buffer.from('x\n')]));
  put(md, 'foreign:2,', 'secret\n');
  fs.chmodSync(path.join(md, 'cur', 'foreign:2,'), 0);
  const box = await openMailbox(md);
  assert.deepEqual(
    box.messages.map((m) => m.unique),
    [ok.name],
  );
  const again = await openMailbox(md);
  assert.deepEqual(again.messages, box.messages);
  assert.equal(again.rewritten, false, 'popcache is rewritten once, not at every login');
});

/** Holds an exclusive flock in another process (util-linux flock(1)) until released. */
async function holdLock(file: string): Promise<{ release: () => Promise<void> }> {
  const child = spawn('flock', ['-x', file, 'sh', '-c', 'echo held; exec cat'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`flock exited ${code}`)));
  });
  return {
    release: async () => {
      child.stdin!.end();
      await exited;
    },
  };
}
