/**
 * popcache.state, the record that lets a later open skip reading cur/
 * (docs/architecture.md, "Maildir"): every change another program, popmda,
 * popctl, a session or a crash can make to a recorded maildir must lead to
 * a full listing or to a listing that is exactly right. "Right" is what an
 * oracle written here finds in the directories (readdir, the first file of
 * each name, new/ before cur/, ordered by the time in the name), with sizes
 * counted independently and UIDLs hashed here. Opens run in a child process
 * as the mail user (what a worker is), other programs as real processes.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { CHECK_EVERY } from '@popd/store/pacer';
import { BIN, run } from '../lib/util';
import { addMessages, chownToMailUser, removeSeeded, seedMaildir, uidlOf, wireOctets } from '../lib/maildirs';
import { killWorkers, login, quit } from '../lib/worker';

after(() => {
  killWorkers();
  removeSeeded();
});

const STATE = 'popcache.state';
/** Longer than the store's margin (2 s): a directory changed before this is settled. */
const SETTLE_WAIT_MS = 2100;
/** A margin that an open started right after a change lists within, however slow the machine. */
const UNSETTLED_MS = 60_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const body = (i: number): Buffer => Buffer.from(`Subject: message ${i}\n\n${'line of text\n'.repeat(1 + (i % 7))}`);
const bodies = (n: number, from = 0): Buffer[] => Array.from({ length: n }, (_, i) => body(from + i));

interface Listed {
  unique: string;
  dir: string;
  file: string;
  octets: number;
}

interface Opened {
  listing: 'scan' | 'new' | 'record';
  rewritten: boolean;
  messages: Listed[];
  /** The UIDLs a session would send, in order. */
  uidls: string[];
}

const OPEN = `
const { openMailbox } = require('@popd/store/maildir');
const [maildir, settle] = process.argv.slice(1);
openMailbox(maildir, settle === 'default' ? {} : { settleMs: Number(settle) }).then((x) => {
  const uidls = Array.from({ length: x.list.length }, (_, i) => x.list.uidl(i));
  process.stdout.write(JSON.stringify({ listing: x.listing, rewritten: x.rewritten, uidls,
    messages: x.messages.map((m) => ({ unique: m.unique, dir: m.dir, file: m.file, octets: m.octets })) }));
});`;

/**
 * openMailbox in a child process as the mail user. settleMs 0 trusts any
 * directory last changed before the listing began by the filesystem's clock
 * (callers let a tick pass first, see tick()); 'default' is the store's 2 s.
 */
async function open(maildir: string, settleMs: number | 'default' = 0): Promise<Opened> {
  const r = await run(process.execPath, ['-e', OPEN, maildir, String(settleMs)]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.toString()) as Opened;
}

/** Lets the filesystem's clock move on (a few ms per tick), so that what changed so far is older than the next listing. */
const tick = (): Promise<void> => sleep(30);

/** What the directories hold, by the rule of docs/architecture.md, found without the store's code. */
function oracle(maildir: string): Listed[] {
  const seen = new Set<string>();
  const found: Array<Listed & { time: bigint }> = [];
  for (const dir of ['new', 'cur']) {
    for (const e of fs.readdirSync(path.join(maildir, dir), { withFileTypes: true })) {
      const unique = e.name.split(':')[0];
      if (!e.isFile() || seen.has(unique)) continue;
      seen.add(unique);
      const t = /^(\d+)\.M(\d+)P/.exec(unique);
      assert.ok(t, `test names carry a time: ${e.name}`);
      const octets = wireOctets(fs.readFileSync(path.join(maildir, dir, e.name)));
      found.push({ unique, dir, file: e.name, octets, time: BigInt(t[1]) * 1_000_000n + BigInt(t[2]) });
    }
  }
  found.sort((a, b) => (a.time !== b.time ? (a.time < b.time ? -1 : 1) : a.unique < b.unique ? -1 : a.unique > b.unique ? 1 : 0));
  return found.map(({ unique, dir, file, octets }) => ({ unique, dir, file, octets }));
}

/** The open listed exactly what is there, with the sizes LIST will say and UIDLs that are the names' hashes. */
function assertExact(maildir: string, o: Opened, what: string): void {
  assert.deepEqual(o.messages, oracle(maildir), `${what}: the listing is what the directories hold`);
  assert.deepEqual(o.uidls, o.messages.map((m) => uidlOf(m.unique)), `${what}: UIDLs`);
  const lines = fs.readFileSync(path.join(maildir, 'popcache'), 'latin1').split('\n').filter((l) => l !== '');
  assert.deepEqual(lines, o.messages.map((m) => `${m.unique} ${m.octets} ${uidlOf(m.unique)}`), `${what}: popcache is the listing, in order`);
}

/** A maildir with n messages (a few in new/, most in cur/ with and without flags) and a record that the next open trusts. */
async function recorded(n = 60): Promise<string> {
  const s = seedMaildir(bodies(n), { sub: 'cur' });
  // Two flagged messages and two still in new/.
  const cur = fs.readdirSync(path.join(s.dir, 'cur')).sort();
  for (const f of cur.slice(3, 5)) fs.renameSync(path.join(s.dir, 'cur', f), path.join(s.dir, 'cur', f.replace(/:2,$/, ':2,S')));
  addMessages(s.dir, bodies(2, n), { base: 1_750_000_000 });
  chownToMailUser(s.dir);
  await tick();
  const first = await open(s.dir);
  assert.equal(first.listing, 'scan');
  assert.ok(fs.existsSync(path.join(s.dir, STATE)), 'the first listing is recorded');
  const again = await open(s.dir);
  assert.equal(again.listing, 'record', 'a later open reads neither directory');
  assert.equal(again.rewritten, false);
  assertExact(s.dir, again, 'recorded');
  return s.dir;
}

/** Runs a shell command as the mail user (another program on the maildir). */
async function sh(cmd: string, ...args: string[]): Promise<void> {
  const r = await run('/bin/sh', ['-c', cmd, 'sh', ...args]);
  assert.equal(r.status, 0, r.stderr);
}

const fileIn = (maildir: string, dir: string, i: number): string => fs.readdirSync(path.join(maildir, dir)).sort()[i];

test('a later open of an unchanged maildir reads neither directory and lists exactly what a scan lists', async () => {
  const dir = await recorded();
  const text = fs.readFileSync(path.join(dir, STATE), 'latin1');
  assert.match(text, /^popd-state 1\ncur \d+ \d+ \d+ \d+ settled\nnew \d+ \d+ \d+ \d+ settled\npopcache \d+ \d+\n/);
  fs.rmSync(path.join(dir, STATE));
  const scanned = await open(dir);
  assert.equal(scanned.listing, 'scan');
  assert.deepEqual((await open(dir)).messages, scanned.messages, 'the record and a scan agree');
});

test('a message added to cur/ by another program in the same second as the record is listed', async () => {
  const dir = await recorded();
  const src = path.join(dir, 'cur', fileIn(dir, 'cur', 0));
  const name = `${Math.floor(Date.now() / 1000)}.M1P99R${crypto.randomBytes(4).toString('hex')}.other:2,`;
  // Right after the open that trusted the record: the directory's mtime may be in the same second as the recorded one.
  await sh('cp "$1" "$2"', src, path.join(dir, 'cur', name));
  const o = await open(dir);
  assert.equal(o.listing, 'scan');
  assert.ok(o.messages.some((m) => m.file === name));
  assertExact(dir, o, 'added to cur/');
});

test('a message removed from cur/ by another program is not listed', async () => {
  const dir = await recorded();
  const gone = fileIn(dir, 'cur', 7);
  await sh('rm "$1"', path.join(dir, 'cur', gone));
  const o = await open(dir);
  assert.equal(o.listing, 'scan');
  assert.ok(!o.messages.some((m) => m.file === gone));
  assertExact(dir, o, 'removed from cur/');
});

test('a message replaced in cur/ by another (the same count, popcache untouched): the names are compared, popcache rewritten', async () => {
  const dir = await recorded();
  const gone = fileIn(dir, 'cur', 20);
  const name = `${gone.split('.')[0]}.M2P98R${crypto.randomBytes(4).toString('hex')}.other:2,`;
  await sh('cp "$1" "$2" && rm "$1"', path.join(dir, 'cur', gone), path.join(dir, 'cur', name));
  const o = await open(dir);
  assert.equal(o.listing, 'scan');
  assert.equal(o.rewritten, true);
  assertExact(dir, o, 'replaced in cur/');
});

test('a rename in cur/ (an IMAP server setting flags) is listed under the new name', async () => {
  const dir = await recorded();
  const f = fileIn(dir, 'cur', 10);
  const renamed = f.replace(/:2,S?$/, ':2,FRS');
  await sh('mv "$1" "$2"', path.join(dir, 'cur', f), path.join(dir, 'cur', renamed));
  const o = await open(dir);
  assert.equal(o.listing, 'scan');
  assert.ok(o.messages.some((m) => m.file === renamed));
  assertExact(dir, o, 'renamed in cur/');
  // Recorded again once settled: the new name is what a later open serves.
  await tick();
  await open(dir);
  const later = await open(dir);
  assert.equal(later.listing, 'record');
  assertExact(dir, later, 'renamed, then recorded');
});

test('popmda delivers: only new/ is read again, popcache is not rewritten, and the next record holds the new message', async () => {
  const dir = await recorded();
  const r = await run(BIN.popmda, ['-m', dir], { input: body(1000) });
  assert.equal(r.status, 0, r.stderr);
  const o = await open(dir);
  assert.equal(o.listing, 'new');
  assert.equal(o.rewritten, false, 'the appended line is already in order');
  assertExact(dir, o, 'after popmda');
  await tick();
  await open(dir);
  const later = await open(dir);
  assert.equal(later.listing, 'record');
  assertExact(dir, later, 'after popmda, recorded');
});

test('another agent writes new/ without popcache: new/ is read again, sizes counted, popcache rewritten', async () => {
  const dir = await recorded();
  // No S= or W=, and a time before every other message: it is counted, and ordered first.
  const name = `1600000000.M5P77R${crypto.randomBytes(4).toString('hex')}.agent`;
  await sh('printf "Subject: x\\n\\nfrom another agent\\n" > "$1"', path.join(dir, 'new', name));
  const o = await open(dir);
  assert.equal(o.listing, 'new');
  assert.equal(o.rewritten, true);
  assert.equal(o.messages[0].unique, name);
  assertExact(dir, o, 'foreign delivery');
  // And a message another program removed from new/ is gone.
  await sh('rm "$1"', path.join(dir, 'new', name));
  await tick();
  const without = await open(dir);
  assert.equal(without.listing, 'new');
  assertExact(dir, without, 'removed from new/');
  // Delivered after everything else: its line is appended, not the whole of popcache rewritten.
  await tick();
  await open(dir);
  const later = `${Math.floor(Date.now() / 1000)}.M6P77R${crypto.randomBytes(4).toString('hex')}.agent`;
  await sh('printf "Subject: y\\n\\nlater, from another agent\\n" > "$1"', path.join(dir, 'new', later));
  const appended = await open(dir);
  assert.equal(appended.listing, 'new');
  assert.equal(appended.rewritten, false);
  assert.equal(appended.messages[appended.messages.length - 1].unique, later);
  assertExact(dir, appended, 'foreign delivery after the rest');
});

test('popctl reindex removes the record; the next open lists both directories', async () => {
  const dir = await recorded();
  const r = await run(BIN.popctl, ['reindex', dir]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!fs.existsSync(path.join(dir, STATE)));
  const o = await open(dir);
  assert.equal(o.listing, 'scan');
  assertExact(dir, o, 'after reindex');
});

test('popcache changed under the record (a rewrite, an edit, removed) means a full listing', async () => {
  const dir = await recorded();
  const pc = path.join(dir, 'popcache');
  const lines = fs.readFileSync(pc, 'latin1').split('\n');
  // One size changed in place, same length: the recorded bytes are not there any more.
  const [name, octets, uidl] = lines[5].split(' ');
  lines[5] = [name, String(Number(octets) + 1), uidl].join(' ');
  fs.writeFileSync(pc, lines.join('\n'));
  let o = await open(dir);
  assert.equal(o.listing, 'scan');
  assertExact(dir, o, 'popcache edited');
  await tick();
  await open(dir);
  fs.rmSync(pc);
  o = await open(dir);
  assert.equal(o.listing, 'scan');
  assertExact(dir, o, 'popcache removed');
});

test('a hostile or broken record is never trusted and never hangs or fails the open', async () => {
  const dir = await recorded();
  const file = path.join(dir, STATE);
  // The directories do not change from here on: each open that lists them records them again, as before.
  const good = fs.readFileSync(file, 'latin1');
  const run0 = good.split('\n').find((l) => /^\d+ cur/.test(l))!;
  const write = (text: string) => (): void => fs.writeFileSync(file, text);
  const variants: Array<[string, () => void | Promise<unknown>]> = [
    ['empty', write('')],
    ['another version', write(good.replace('popd-state 1', 'popd-state 2'))],
    ['cut short', write(good.slice(0, good.length - 5))],
    ['one message more than popcache has', write(good.replace(run0, run0.replace(/^\d+/, (n) => String(Number(n) + 1))))],
    ['one message fewer', write(good.replace(run0, run0.replace(/^\d+/, (n) => String(Number(n) - 1))))],
    ['a suffix with a slash', write(good.replace(run0, run0.replace(/ cur.*/, ' cur :2,/../x')))],
    ['another CRC', write(good.replace(/^popcache (\d+) (\d+)$/m, (_, size: string, crc: string) => `popcache ${size} ${(Number(crc) + 1) % 2 ** 32}`))],
    ['a negative number', write(good.replace(/^cur (\d+)/m, 'cur -$1'))],
    ['CRLF lines', write(good.replace(/\n/g, '\r\n'))],
    ['larger than any record', write(good.replace('\nend\n', `\n${'1 cur :2,\n'.repeat(500_000)}end\n`))],
    ['a directory', () => fs.mkdirSync(file)],
    ['a FIFO', () => sh('mkfifo "$1"', file)],
    ['a symlink to a good copy', () => fs.symlinkSync(path.join(dir, 'tmp', 'copy'), file)],
  ];
  fs.writeFileSync(path.join(dir, 'tmp', 'copy'), good);
  for (const [what, make] of [['the good record (the control)', write(good)] as const, ...variants]) {
    fs.rmSync(file, { recursive: true, force: true });
    await make();
    const o = await open(dir);
    assert.equal(o.listing, what.startsWith('the good') ? 'record' : 'scan', what);
    assertExact(dir, o, what);
  }
  fs.rmSync(path.join(dir, 'tmp', 'copy'));
});

test('a popcache line forged together with a record to match (a name that leaves the maildir, a uidl that breaks a line) is never served', async () => {
  const dir = await recorded();
  const cache = path.join(dir, 'popcache');
  const file = path.join(dir, STATE);
  const goodCache = fs.readFileSync(cache, 'latin1');
  const goodState = fs.readFileSync(file, 'latin1');
  const [first, ...rest] = goodCache.split('\n');
  const [name, octets, uidl] = first.split(' ');
  const variants: Array<[string, string]> = [
    ['a name with a path', `../../secret ${octets} ${uidlOf('../../secret')}`],
    ['a name with a flags part', `${name}:2,S ${octets} ${uidl}`],
    ['a uidl with CR in it', `${name} ${octets} ${'Z\r'.repeat(32)}`],
    ['a uidl in capitals', `${name} ${octets} ${uidl.toUpperCase()}`],
  ];
  for (const [what, line] of variants) {
    // What anyone who may write popcache may write: the line, and a record whose size and CRC-32 are the forged file's.
    const forged = Buffer.from([line, ...rest].join('\n'), 'latin1');
    fs.writeFileSync(cache, forged);
    fs.writeFileSync(file, goodState.replace(/^popcache \d+ \d+$/m, `popcache ${forged.length} ${zlib.crc32(forged)}`));
    const o = await open(dir);
    assert.equal(o.listing, 'scan', what);
    assertExact(dir, o, what);
    fs.writeFileSync(cache, goodCache);
  }
});

test('UPDATE deleting messages, and a session that changes nothing', async () => {
  const dir = await recorded();
  let w = await login(dir);
  assert.match(w.greeting, /^\+OK alice has 62 messages/);
  assert.equal(await w.pop.cmd('DELE 2'), '+OK message 2 deleted');
  assert.equal(await w.pop.cmd('DELE 40'), '+OK message 40 deleted');
  assert.match((await quit(w)).answer, /^\+OK 2 messages deleted/);
  let o = await open(dir);
  assert.equal(o.listing, 'scan');
  assertExact(dir, o, 'after UPDATE');
  assert.equal(o.messages.length, 60);
  // Everything moved to cur/ now: once settled, a session that only lists leaves the record true.
  await tick();
  await open(dir);
  w = await login(dir);
  w.pop.send('LIST');
  const list = (await w.pop.reply(true)).body!.toString('latin1');
  await quit(w);
  assert.equal(list, oracle(dir).map((m, i) => `${i + 1} ${m.octets}\r\n`).join(''), 'LIST says the octets of the files');
  o = await open(dir);
  assert.equal(o.listing, 'record');
  assertExact(dir, o, 'after a session that changed nothing');
});

test('the new/ to cur/ move after +OK: the next open lists where each message is now', async () => {
  // Fewer than the pacer's steps between two looks at the clock: the move is one slice, done before the greeting,
  // however slow the machine (with more, a slice could end early and leave the rest for the client's silence).
  const small = CHECK_EVERY - 1;
  const s = seedMaildir(bodies(small));
  await sleep(SETTLE_WAIT_MS);
  // The worker (the store's 2 s margin) records new/ as settled.
  let w = await login(s.dir);
  assert.equal(w.greeting.split(' (')[0], `+OK alice has ${small} messages`);
  await quit(w);
  assert.equal(fs.readdirSync(path.join(s.dir, 'new')).length, 0, 'a small mailbox moves in its first slice');
  const o = await open(s.dir, 'default');
  assert.equal(o.listing, 'scan', 'cur/ and new/ changed since the record');
  assertExact(s.dir, o, 'after the move');
  assert.ok(o.messages.every((m) => m.dir === 'cur' && m.file === `${m.unique}:2,`));
  // RETR marks a message seen (a rename): the record does not hide it.
  await tick();
  await open(s.dir);
  w = await login(s.dir);
  const third = oracle(s.dir)[2];
  w.pop.send('RETR 3');
  assert.equal((await w.pop.reply(true)).body!.length, third.octets, 'RETR sends the octets LIST says');
  await quit(w);
  const after = await open(s.dir);
  assert.equal(after.listing, 'scan');
  assert.equal(after.messages[2].file, `${after.messages[2].unique}:2,S`);
  assertExact(s.dir, after, 'after RETR');
});

test('kill -9 of a worker while it moves new/ to cur/: the next open lists exactly where each message is', async () => {
  const s = seedMaildir(bodies(6000));
  await sleep(SETTLE_WAIT_MS);
  const before = await open(s.dir, 'default');
  assert.equal(before.listing, 'scan');
  assert.equal((await open(s.dir, 'default')).listing, 'record', 'all in new/ and recorded');
  // The first slice of the move runs before the greeting, the rest once the client has been silent QUIET_MS. A UIDL
  // in the worker's input from the start, its answer (426 KB, twice what the socketpair and our socket hold) never
  // read: the worker waits to write it, never for the client, so the move stays between the two until the kill.
  const w = await login(s.dir, {}, 'UIDL\r\n');
  assert.match(w.greeting, /^\+OK alice has 6000 messages/);
  w.child.kill('SIGKILL');
  await w.exited;
  const left = fs.readdirSync(path.join(s.dir, 'new')).length;
  assert.ok(left > 0 && left < 6000, `killed in the middle of the move (${left} left in new/)`);
  const o = await open(s.dir, 'default');
  assert.equal(o.listing, 'scan');
  assertExact(s.dir, o, 'after kill -9');
  assert.deepEqual(o.messages.map((m) => m.unique), before.messages.map((m) => m.unique), 'the same messages, in the same order');
});

test('a directory changed within the margin (2 s by default) before the listing is not trusted later', async () => {
  const s = seedMaildir(bodies(20));
  // Just written: neither directory is recorded as settled, and every open lists both. An open starts a node child
  // (seconds on a loaded machine), so the opens that must list within the margin of a change give a margin of a
  // minute; the opens after SETTLE_WAIT_MS keep the store's own 2 s, and must find the directories settled.
  assert.equal((await open(s.dir, UNSETTLED_MS)).listing, 'scan');
  assert.match(fs.readFileSync(path.join(s.dir, STATE), 'latin1'), /^cur .* unsettled\nnew .* unsettled\n/m, 'a directory that may still change within its clock tick');
  assert.equal((await open(s.dir, UNSETTLED_MS)).listing, 'scan');
  await sleep(SETTLE_WAIT_MS);
  assert.equal((await open(s.dir, 'default')).listing, 'scan');
  const o = await open(s.dir, 'default');
  assert.equal(o.listing, 'record');
  assertExact(s.dir, o, 'settled');
  // new/ changed within the margin: read again while cur/ is not, recorded as not settled, so read again next time too.
  addMessages(s.dir, bodies(1, 20), { base: 1_800_000_000 });
  chownToMailUser(path.join(s.dir, 'new'));
  for (const time of ['first', 'second']) {
    const o2 = await open(s.dir, UNSETTLED_MS);
    assert.equal(o2.listing, 'new', time);
    assertExact(s.dir, o2, `new mail, ${time} open`);
    assert.match(fs.readFileSync(path.join(s.dir, STATE), 'latin1'), /^new .* unsettled$/m);
  }
  await sleep(SETTLE_WAIT_MS);
  assert.equal((await open(s.dir, 'default')).listing, 'new');
  assert.equal((await open(s.dir, 'default')).listing, 'record');
});
