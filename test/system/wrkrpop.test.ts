/** wrkrpop's commands and error cases, over a real socketpair to a real wrkrpop child. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { isRoot } from '../lib/util';
import { waitFor } from '../lib/mailhost';
import { seedMaildir, uidlOf, wireOracle, removeSeeded } from '../lib/maildirs';
import { login, quit, killWorkers, spawnWorker, start } from '../lib/worker';

after(() => {
  killWorkers();
  removeSeeded();
});

const M1 = Buffer.from('From: a@example.org\nSubject: one\n\nfirst line\n.dotted\n..two dots\n.\nlast\n');
const M2 = Buffer.from('Subject: two\r\n\r\nbody 1\r\nbody 2\r\nbody 3\r\n');
const M3 = Buffer.from('Subject: three, no body and no final newline');
const W = [M1, M2, M3].map(wireOracle);
const TOTAL = W.reduce((s, b) => s + b.length, 0);

async function session(bodies = [M1, M2, M3], o: Parameters<typeof login>[1] = {}) {
  const s = seedMaildir(bodies);
  const w = await login(s.dir, o);
  return { ...s, w };
}

const ls = (dir: string, sub = 'cur'): string[] => fs.readdirSync(path.join(dir, sub)).sort();

test('greeting, STAT, LIST, UIDL, NOOP, CAPA; octets are the wire form', async () => {
  const { w, uniques } = await session();
  assert.equal(w.greeting, `+OK alice has 3 messages (${TOTAL} octets)`);
  assert.equal(await w.pop.cmd('STAT'), `+OK 3 ${TOTAL}`);
  w.pop.send('LIST');
  assert.deepEqual(await w.pop.reply(true), { status: `+OK 3 messages (${TOTAL} octets)`, body: Buffer.from(W.map((b, i) => `${i + 1} ${b.length}\r\n`).join('')) });
  assert.equal(await w.pop.cmd('LIST 2'), `+OK 2 ${W[1].length}`);
  w.pop.send('UIDL');
  const uidl = (await w.pop.reply(true)).body!.toString();
  assert.equal(uidl, uniques.map((u, i) => `${i + 1} ${uidlOf(u)}\r\n`).join(''));
  assert.equal(await w.pop.cmd('UIDL 3'), `+OK 3 ${uidlOf(uniques[2])}`);
  assert.equal(await w.pop.cmd('NOOP'), '+OK');
  w.pop.send('CAPA');
  const capa = await w.pop.reply(true);
  assert.match(capa.status, /^\+OK/);
  assert.deepEqual(capa.body!.toString().split('\r\n').slice(0, -1), ['TOP', 'UIDL', 'PIPELINING', 'RESP-CODES', 'IMPLEMENTATION popd']);
  assert.deepEqual(await quit(w), { answer: '+OK 0 messages deleted, 3 left', code: 0 });
});

test('RETR sends the wire form, unstuffed equal to the file; marks seen (TOP does not); UIDL unchanged', async () => {
  const { w, dir, uniques } = await session();
  for (const i of [0, 1, 2]) {
    w.pop.send(`RETR ${i + 1}`);
    const r = await w.pop.reply(true);
    assert.equal(r.status, `+OK ${W[i].length} octets`);
    assert.deepEqual(r.body, W[i]);
  }
  w.pop.send('TOP 1 0');
  await w.pop.reply(true);
  w.pop.send('UIDL');
  assert.equal((await w.pop.reply(true)).body!.toString(), uniques.map((u, i) => `${i + 1} ${uidlOf(u)}\r\n`).join(''));
  // Marked once the client has been silent a moment (QUIET_MS), not on each RETR's way.
  const seen = uniques.map((u) => `${u}:2,S`).sort();
  await waitFor('the retrieved messages to be marked seen', () => JSON.stringify(ls(dir)) === JSON.stringify(seen));
  await quit(w);
  const again = await login(dir);
  again.pop.send('UIDL');
  assert.equal((await again.pop.reply(true)).body!.toString(), uniques.map((u, i) => `${i + 1} ${uidlOf(u)}\r\n`).join(''));
  await quit(again);
});

test('TOP: header, blank line, k body lines of the wire form; k past the end or no blank line sends it all', async () => {
  const body = Buffer.from('A: 1\nB: 2\n continued\n\nl1\n.l2\r\nl3\nl4');
  const { w } = await session([body, M3, Buffer.from('\nstarts with the blank line\nl2\n')]);
  const top = async (args: string): Promise<string> => {
    w.pop.send(`TOP ${args}`);
    const r = await w.pop.reply(true);
    assert.equal(r.status, '+OK top of message follows');
    return r.body!.toString();
  };
  assert.equal(await top('1 0'), 'A: 1\r\nB: 2\r\n continued\r\n\r\n');
  assert.equal(await top('1 2'), 'A: 1\r\nB: 2\r\n continued\r\n\r\nl1\r\n.l2\r\n');
  assert.equal(await top('1 4'), wireOracle(body).toString());
  assert.equal(await top('1 5'), wireOracle(body).toString());
  assert.equal(await top('1 123456789012345678901234567890'), wireOracle(body).toString());
  assert.equal(await top('2 0'), wireOracle(M3).toString());
  assert.equal(await top('3 0'), '\r\n');
  assert.equal(await top('3 1'), '\r\nstarts with the blank line\r\n');
  await quit(w);
});

test('message numbers are strict; deleted messages are invisible; errors leave the session going', async () => {
  const { w } = await session();
  const errs: [string, RegExp][] = [
    ['RETR 0', /^-ERR invalid message number/],
    ['RETR 4', /^-ERR no such message, only 3 messages/],
    ['RETR +1', /^-ERR invalid message number/],
    ['RETR -1', /^-ERR invalid message number/],
    ['RETR 01', /^-ERR invalid message number/],
    ['RETR 1.0', /^-ERR invalid message number/],
    ['RETR 0x1', /^-ERR invalid message number/],
    ['RETR 1e0', /^-ERR invalid message number/],
    ['RETR ١', /^-ERR invalid message number/],
    ['RETR 4294967297', /^-ERR no such message/],
    ['RETR 18446744073709551617', /^-ERR invalid message number/],
    ['RETR', /^-ERR syntax: RETR msg/],
    ['RETR 1 2', /^-ERR syntax: RETR msg/],
    ['RETR  1', /^-ERR syntax error/],
    ['RETR 1 ', /^-ERR syntax error/],
    ['LIST 1 2', /^-ERR syntax/],
    ['LIST x', /^-ERR invalid message number/],
    ['UIDL 9', /^-ERR no such message/],
    ['TOP 1', /^-ERR syntax: TOP msg lines/],
    ['TOP 1 -1', /^-ERR invalid line count/],
    ['TOP 1 +1', /^-ERR invalid line count/],
    ['TOP 1 01', /^-ERR invalid line count/],
    ['TOP 0 1', /^-ERR invalid message number/],
    ['STAT 1', /^-ERR syntax: STAT/],
    ['NOOP x', /^-ERR syntax/],
    ['USER alice', /^-ERR command not valid in TRANSACTION state/],
    ['PASS x', /^-ERR command not valid in TRANSACTION state/],
    ['AUTH PLAIN', /^-ERR command not valid in TRANSACTION state/],
    ['STLS', /^-ERR command not valid in TRANSACTION state/],
    ['APOP a b', /^-ERR command not valid in TRANSACTION state/],
    ['XYZZY', /^-ERR unknown command/],
    ['', /^-ERR syntax error/],
  ];
  for (const [cmd, re] of errs) assert.match(await w.pop.cmd(cmd), re, cmd);
  assert.equal(await w.pop.cmd('dele 2'), '+OK message 2 deleted');
  for (const cmd of ['DELE 2', 'RETR 2', 'TOP 2 0', 'LIST 2', 'UIDL 2']) assert.equal(await w.pop.cmd(cmd), '-ERR message 2 already deleted', cmd);
  assert.equal(await w.pop.cmd('stat'), `+OK 2 ${W[0].length + W[2].length}`);
  w.pop.send('List');
  assert.equal((await w.pop.reply(true)).body!.toString(), `1 ${W[0].length}\r\n3 ${W[2].length}\r\n`);
  w.pop.send('uidl');
  assert.doesNotMatch((await w.pop.reply(true)).body!.toString(), /^2 /m);
  assert.equal(await w.pop.cmd('RSET'), `+OK maildrop has 3 messages (${TOTAL} octets)`);
  assert.equal(await w.pop.cmd('LIST 2'), `+OK 2 ${W[1].length}`);
  assert.equal(await w.pop.cmd('NoOp'), '+OK');
  await quit(w);
});

test('line rules: 255 octets + CRLF, longer lines refused up to their end, bare LF, control bytes', async () => {
  const { w } = await session();
  const pad = (n: number): string => 'NOOP ' + 'x'.repeat(n - 5);
  assert.match(await w.pop.cmd(pad(255)), /^-ERR syntax/, '255 octets is a line');
  assert.equal(await w.pop.cmd(pad(256)), '-ERR line too long');
  // A long line arriving in pieces, with a command hidden in its tail: all of it is discarded.
  w.pop.sendRaw('NOOP ' + 'y'.repeat(300));
  await new Promise((r) => setTimeout(r, 20));
  w.pop.sendRaw('z'.repeat(5000) + ' DELE 1\r\nSTAT\r\n');
  assert.equal(await w.pop.line(), '-ERR line too long');
  assert.equal(await w.pop.line(), `+OK 3 ${TOTAL}`);
  // A CRLF split across writes, and a bare LF.
  w.pop.sendRaw('STAT\r');
  await new Promise((r) => setTimeout(r, 20));
  w.pop.sendRaw('\nNOOP\nLIST 1\n');
  assert.equal(await w.pop.line(), `+OK 3 ${TOTAL}`);
  assert.equal(await w.pop.line(), '+OK');
  assert.equal(await w.pop.line(), `+OK 1 ${W[0].length}`);
  for (const raw of ['NOOP\0\r\n', 'ST\x01AT\r\n', 'STAT\r\r\n', 'LIST\t1\r\n', 'NOOP\x7f\r\n', 'DELE 1\0\r\n']) {
    w.pop.sendRaw(raw);
    assert.equal(await w.pop.line(), '-ERR invalid character in command', JSON.stringify(raw));
  }
  assert.equal(await w.pop.cmd('STAT'), `+OK 3 ${TOTAL}`, 'nothing was deleted by a refused line');
  await quit(w);
});

test('a flood of over-long lines closes the session without UPDATE', async () => {
  const { w, dir } = await session();
  assert.equal(await w.pop.cmd('DELE 1'), '+OK message 1 deleted');
  w.pop.sendRaw(('NOOP ' + 'x'.repeat(400) + '\r\n').repeat(20) + 'QUIT\r\n');
  const rest = (await w.pop.rest()).toString();
  assert.equal(rest, '-ERR line too long\r\n'.repeat(10) + '-ERR too many over-long lines, closing\r\n');
  // A worker outlives its sessions: the session's end is in its summary, not in the exit status.
  assert.equal((await w.exited).code, 0);
  assert.equal(ls(dir).length, 3, 'nothing deleted');
  assert.ok(w.logs.some((l) => /ended=error \(line flood\)/.test(l.msg)));
});

test('one endless line closes the session once it passes 64 KiB', async () => {
  const { w } = await session();
  w.pop.sendRaw('NOOP ' + 'x'.repeat(70 * 1024));
  assert.equal((await w.pop.rest()).toString(), '-ERR too many over-long lines, closing\r\n');
  assert.equal((await w.exited).code, 0);
  assert.ok(w.logs.some((l) => /ended=error \(line flood\)/.test(l.msg)));
});

test('pipelining: 500 commands in one write, 500 answers in order', async () => {
  const { w, uniques } = await session();
  const kinds = ['STAT', 'LIST 2', 'UIDL 3', 'NOOP', 'TOP 2 1', 'RETR 1', 'LIST', 'BOGUS', 'RETR 9', 'CAPA'];
  const cmds: string[] = [];
  for (let i = 0; i < 499; i++) cmds.push(kinds[i % kinds.length]);
  cmds[250] = 'DELE 3';
  cmds.push('QUIT');
  w.pop.sendRaw(cmds.map((c) => c + '\r\n').join(''));
  let deleted = false;
  for (let i = 0; i < cmds.length; i++) {
    const c = cmds[i];
    const live: number = deleted ? 2 : 3;
    const octets: number = deleted ? TOTAL - W[2].length : TOTAL;
    const multi = c === 'LIST' || c === 'CAPA' || c.startsWith('TOP') || (c.startsWith('RETR') && c !== 'RETR 9');
    const r = await w.pop.reply(multi);
    const where = `answer ${i + 1} to ${c}`;
    switch (c) {
      case 'STAT':
        assert.equal(r.status, `+OK ${live} ${octets}`, where);
        break;
      case 'LIST 2':
        assert.equal(r.status, `+OK 2 ${W[1].length}`, where);
        break;
      case 'UIDL 3':
        assert.equal(r.status, deleted ? '-ERR message 3 already deleted' : `+OK 3 ${uidlOf(uniques[2])}`, where);
        break;
      case 'NOOP':
        assert.equal(r.status, '+OK', where);
        break;
      case 'TOP 2 1':
        assert.equal(r.body!.toString(), 'Subject: two\r\n\r\nbody 1\r\n', where);
        break;
      case 'RETR 1':
        assert.deepEqual(r.body, W[0], where);
        break;
      case 'LIST':
        assert.equal(r.status, `+OK ${live} messages (${octets} octets)`, where);
        assert.equal(r.body!.toString().split('\r\n').length - 1, live, where);
        break;
      case 'BOGUS':
        assert.equal(r.status, '-ERR unknown command', where);
        break;
      case 'RETR 9':
        assert.match(r.status, /^-ERR no such message/, where);
        break;
      case 'CAPA':
        assert.match(r.body!.toString(), /^TOP\r\n/, where);
        break;
      case 'DELE 3':
        assert.equal(r.status, '+OK message 3 deleted', where);
        deleted = true;
        break;
      case 'QUIT':
        assert.equal(r.status, '+OK 1 messages deleted, 2 left', where);
        break;
    }
  }
  assert.equal((await w.exited).code, 0);
});

test('a client that never ends its side after QUIT: the worker still ends the session (when its drain gives up) and exits', { timeout: 30_000 }, async () => {
  const { dir } = seedMaildir([M1, M2]);
  const w = spawnWorker({ keepOpen: true });
  start(w, dir);
  assert.match(await w.pop.line(), /^\+OK/);
  assert.match(await w.pop.cmd('DELE 1'), /^\+OK/);
  assert.equal(await w.pop.cmd('QUIT'), '+OK 1 messages deleted, 1 left');
  // Our end stays open: only the drain's bound lets the worker end the session, tell popd, and exit.
  assert.equal((await w.exited).code, 0);
  assert.ok(w.messages.some((m) => m.t === 'ended'), JSON.stringify(w.messages));
  assert.equal(ls(dir).length, 1);
  w.io.destroy();
});

test('idle timeout closes the session without UPDATE and logs it', async () => {
  // The timer starts with the session: DELE 1 waits in the worker's input from the start, not 300 ms of the
  // test's own round trip after the greeting.
  const { dir } = seedMaildir([M1, M2, M3]);
  const w = await login(dir, { idleTimeoutMs: 300 }, 'DELE 1\r\n');
  assert.equal(await w.pop.line(), '+OK message 1 deleted');
  assert.equal((await w.pop.rest()).length, 0);
  assert.equal((await w.exited).code, 0);
  assert.equal(ls(dir).length, 3);
  assert.ok(w.logs.some((l) => /session end user=alice ended=timeout retrieved=0 .*deleted=0/.test(l.msg)), JSON.stringify(w.logs));
});

test('a message gone since login gets -ERR [SYS/TEMP]; one renamed by another program is still found', async () => {
  const { w, dir, uniques } = await session();
  fs.unlinkSync(path.join(dir, 'cur', `${uniques[0]}:2,`));
  fs.renameSync(path.join(dir, 'cur', `${uniques[1]}:2,`), path.join(dir, 'cur', `${uniques[1]}:2,F`));
  assert.equal(await w.pop.cmd('RETR 1'), '-ERR [SYS/TEMP] message 1 is no longer available');
  assert.equal(await w.pop.cmd('NOOP'), '+OK');
  w.pop.send('RETR 2');
  assert.deepEqual((await w.pop.reply(true)).body, W[1]);
  await waitFor('message 2 to be marked seen, its flags in ASCII order', () => fs.existsSync(path.join(dir, 'cur', `${uniques[1]}:2,FS`)));
  assert.equal(await w.pop.cmd('DELE 1'), '+OK message 1 deleted');
  assert.equal(await w.pop.cmd('DELE 2'), '+OK message 2 deleted');
  assert.equal((await quit(w)).answer, '+OK 2 messages deleted, 1 left');
  assert.deepEqual(ls(dir), [`${uniques[2]}:2,`]);
  assert.ok(w.logs.some((l) => l.level === 'warning' && /message 1 .* vanished/.test(l.msg)));
});

test('RETR, DELE and QUIT of messages still in new/ while a first session moves them to cur/', async () => {
  const many = Array.from({ length: 3000 }, (_, i) => Buffer.from(`Subject: ${i + 1}\n\n.line of message ${i + 1}\n`));
  const s = seedMaildir(many);
  const w = await login(s.dir);
  // Pipelined at once: the session is busy, so the last messages are still in new/ when they are asked for.
  w.pop.sendRaw('RETR 3000\r\nDELE 3000\r\nTOP 2999 0\r\nDELE 2999\r\nRETR 1\r\nQUIT\r\n');
  assert.deepEqual((await w.pop.reply(true)).body, wireOracle(many[2999]));
  assert.equal(await w.pop.line(), '+OK message 3000 deleted');
  assert.deepEqual((await w.pop.reply(true)).body, Buffer.from('Subject: 2999\r\n\r\n'));
  assert.equal(await w.pop.line(), '+OK message 2999 deleted');
  assert.deepEqual((await w.pop.reply(true)).body, wireOracle(many[0]));
  assert.equal(await w.pop.line(), '+OK 2 messages deleted, 2998 left');
  assert.equal((await w.exited).code, 0);
  const left = [...ls(s.dir, 'new'), ...ls(s.dir, 'cur')].map((f) => f.split(':')[0]).sort();
  assert.deepEqual(left, s.uniques.slice(0, 2998).sort());
  assert.ok(ls(s.dir).includes(`${s.uniques[0]}:2,S`), 'RETR marked it seen in cur/');
});

test('symlinks, directories and FIFOs in the maildir are never followed or served', async () => {
  const { w, dir, uniques } = await session();
  const secret = path.join(path.dirname(dir), 'secret');
  fs.writeFileSync(secret, 'TOP SECRET\n', { mode: 0o644 });
  const file = (i: number): string => path.join(dir, 'cur', `${uniques[i]}:2,`);
  fs.unlinkSync(file(0));
  fs.symlinkSync(secret, file(0));
  fs.unlinkSync(file(1));
  fs.mkdirSync(file(1));
  fs.unlinkSync(file(2));
  const fifo = spawnSync('mkfifo', ['-m', '0666', file(2)]);
  assert.equal(fifo.status, 0);
  for (const n of [1, 2, 3]) {
    assert.equal(await w.pop.cmd(`RETR ${n}`), `-ERR [SYS/PERM] message ${n} cannot be served`);
    assert.equal(await w.pop.cmd(`TOP ${n} 0`), `-ERR [SYS/PERM] message ${n} cannot be served`);
  }
  await quit(w);
  // At the next login none of them is a message, and the symlink is untouched.
  const again = await login(dir);
  assert.equal(again.greeting, '+OK alice has 0 messages (0 octets)');
  await quit(again);
  assert.equal(fs.readlinkSync(file(0)), secret);
});

test('a wrong W= from a foreign delivery agent: RETR sends the truth, popcache is corrected (also without QUIT)', async () => {
  for (const end of ['QUIT', 'EOF']) {
    const s = seedMaildir([M1, M2], { wrongW: new Map([[1, 5]]) });
    const w = await login(s.dir);
    assert.equal(await w.pop.cmd('LIST 2'), '+OK 2 5');
    w.pop.send('RETR 2');
    assert.deepEqual((await w.pop.reply(true)).body, W[1]);
    if (end === 'QUIT') await quit(w);
    else {
      w.io.end();
      await w.exited;
    }
    assert.ok(w.logs.some((l) => l.level === 'warning' && new RegExp(`indexed as 5 octets, sent ${W[1].length}`).test(l.msg)), end);
    const again = await login(s.dir);
    assert.equal(await again.pop.cmd('LIST 2'), `+OK 2 ${W[1].length}`, end);
    await quit(again);
  }
});

test('stale files in tmp/ (36 hours) are removed at login, fresh ones stay', async () => {
  const s = seedMaildir([M1]);
  const old = path.join(s.dir, 'tmp', '1600000000.old');
  const fresh = path.join(s.dir, 'tmp', '1700000000.fresh');
  fs.writeFileSync(old, 'x');
  fs.writeFileSync(fresh, 'y');
  const t = (Date.now() - 37 * 3600 * 1000) / 1000;
  fs.utimesSync(old, t, t);
  const w = await login(s.dir);
  assert.equal(w.greeting, `+OK alice has 1 messages (${W[0].length} octets)`);
  assert.ok(!fs.existsSync(old));
  assert.ok(fs.existsSync(fresh));
  await quit(w);
});

test('the summary in the log: retrieved, octets, deleted, duration, how it ended; never message text', async () => {
  const secretBody = Buffer.from('Subject: private-subject-xyz\n\nsecret-body-xyz\n');
  const { w } = await session([secretBody, M2]);
  w.pop.send('RETR 1');
  await w.pop.reply(true);
  w.pop.send('TOP 2 1');
  await w.pop.reply(true);
  await w.pop.cmd('DELE 2');
  await quit(w);
  const all = w.logs.map((l) => l.msg).join('\n');
  assert.match(all, /session start user=alice/);
  assert.match(all, /session end user=alice ended=quit retrieved=1 octets=\d+ deleted=1 duration=\d+\.\d{3}s/);
  assert.doesNotMatch(all + w.stderr(), /xyz/);
});

test('EOF right after the greeting and pipelined commands before EOF are answered', async () => {
  const { w, dir } = await session();
  w.pop.sendRaw('DELE 1\r\nSTAT\r\n');
  w.io.end();
  assert.equal((await w.pop.rest()).toString(), `+OK message 1 deleted\r\n+OK 2 ${TOTAL - W[0].length}\r\n`);
  assert.equal((await w.exited).code, 0);
  assert.equal(ls(dir).length, 3, 'EOF is not QUIT: nothing deleted');
  assert.ok(w.logs.some((l) => /ended=eof/.test(l.msg)));
});

test('seen marks of a client that never pauses are made at the end: after QUIT, not for a message UPDATE removes; after EOF, for every one retrieved', async () => {
  const q = await session();
  q.w.pop.sendRaw('RETR 1\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n');
  q.w.io.end();
  await q.w.pop.rest();
  assert.equal((await q.w.exited).code, 0);
  assert.deepEqual(ls(q.dir), [`${q.uniques[0]}:2,S`, `${q.uniques[2]}:2,`].sort());
  const e = await session();
  e.w.pop.sendRaw('RETR 1\r\nRETR 2\r\nDELE 2\r\n');
  e.w.io.end();
  await e.w.pop.rest();
  assert.equal((await e.w.exited).code, 0);
  assert.deepEqual(ls(e.dir), [`${e.uniques[0]}:2,S`, `${e.uniques[1]}:2,S`, `${e.uniques[2]}:2,`].sort(), 'EOF is not QUIT: the deleted one stays, seen');
});

test('as root, the message files stay owned by the mail user', { skip: !isRoot && 'needs root' }, async () => {
  const { w, dir } = await session();
  w.pop.send('RETR 1');
  await w.pop.reply(true);
  await quit(w);
  for (const f of [...ls(dir).map((x) => path.join('cur', x)), 'popcache', 'maildrop.lock']) {
    const st = fs.statSync(path.join(dir, f));
    assert.notEqual(st.uid, 0, f);
  }
});
