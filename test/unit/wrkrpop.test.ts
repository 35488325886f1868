/**
 * wrkrpop's pure parts (line splitting, command parsing, dot-stuffing, TOP's
 * cut) fed every way a stream can split its bytes, and the whole engine run
 * in-process over a plain duplex stream (a connected pair of Unix sockets).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Logger } from '@popd/shared/log';
import { LineEvent, LineSplitter, MAX_DISCARD, MAX_LONG_LINES, Pop3Lines } from '@popd/shared/pop3lines';
import { parseCommand } from '@popd/wrkrpop/command';
import { WireEdit } from '@popd/wrkrpop/wireedit';
import { wireSizeOf } from '@popd/store/wire';
import { TopLimiter } from '@popd/wrkrpop/top';
import { serve } from '@popd/wrkrpop/serve';
import { openMessage, readWhole, wholeRoom } from '@popd/wrkrpop/retr';
import { Message } from '@popd/store/maildir';
import { OUTPUT_BLOCK as BLOCK, TLS_RECORD as RECORD } from '@popd/shared/params';
import { Pop3Client } from '../lib/pop3';
import { removeSeeded, seedMaildir, wireOracle } from '../lib/maildirs';
import { INPUTS, editInPlace, referenceWire, splitAt } from '../lib/store';
import { tmpdir } from '../lib/util';

after(removeSeeded);

/** Feeds bytes in pieces of `step` and collects every event. */
function split(bytes: string | Buffer, step: number): LineEvent[] {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'latin1');
  const s = new LineSplitter();
  const out: LineEvent[] = [];
  for (let i = 0; i < buf.length; i += step) {
    s.push(buf.subarray(i, i + step));
    for (let ev = s.next(); ev; ev = s.next()) out.push(ev);
  }
  return out;
}

const line = (text: string): LineEvent => ({ kind: 'line', line: Buffer.from(text, 'latin1') });

test('LineSplitter: CRLF or bare LF, 255 octets, too long, control bytes; the same whatever the chunking', () => {
  const input = `STAT\r\nNOOP\n${'x'.repeat(255)}\r\n${'y'.repeat(256)}\r\n${'z'.repeat(1000)}\nA\0B\r\nC\rD\r\nLAST\r\npartial`;
  const want: LineEvent[] = [
    line('STAT'),
    line('NOOP'),
    line('x'.repeat(255)),
    { kind: 'toolong' },
    { kind: 'toolong' },
    { kind: 'control' },
    { kind: 'control' },
    line('LAST'),
  ];
  for (const step of [1, 2, 3, 7, 64, 255, 256, 257, 4096]) assert.deepEqual(split(input, step), want, `step ${step}`);
});

test('Pop3Lines: control bytes and over-long lines are answered; one over-long line too many ends the session; take() returns what is not a line yet', () => {
  const p = new Pop3Lines();
  p.push(Buffer.from(`A\0B\r\n${'y\r\n'.replace('y', 'y'.repeat(300)).repeat(MAX_LONG_LINES + 1)}STAT\r\nrest`));
  assert.deepEqual(p.next(), { t: 'answer', text: '-ERR invalid character in command' });
  for (let i = 0; i < MAX_LONG_LINES; i++) assert.deepEqual(p.next(), { t: 'answer', text: '-ERR line too long' });
  assert.deepEqual(p.next(), { t: 'close', text: '-ERR too many over-long lines, closing', why: 'line flood' });
  assert.deepEqual(p.next(), { t: 'line', line: Buffer.from('STAT') });
  assert.equal(p.next(), null);
  assert.equal(p.take().toString(), 'rest');
  p.push(Buffer.from('US'));
  assert.equal(p.next(), null);
  p.push(Buffer.from('ER a\r\nPASS b'));
  assert.deepEqual(p.next(), { t: 'line', line: Buffer.from('USER a') });
  assert.equal(p.next(), null);
  assert.equal(p.take().toString(), 'PASS b', 'the start of a line that spans pushes is taken too');
});

test('LineSplitter: an endless line is a flood once past MAX_DISCARD', () => {
  const s = new LineSplitter();
  let flood = false;
  for (let sent = 0; sent <= MAX_DISCARD + 8192 && !flood; sent += 4096) {
    s.push(Buffer.alloc(4096, 0x61));
    const ev = s.next();
    flood = ev?.kind === 'flood';
  }
  assert.ok(flood);
});

test('parseCommand: case-insensitive verbs, strict numbers, arity', () => {
  assert.deepEqual(parseCommand('retr 7'), { kind: 'RETR', msg: 7 });
  assert.deepEqual(parseCommand('Top 1 0'), { kind: 'TOP', msg: 1, lines: 0 });
  assert.deepEqual(parseCommand('LIST'), { kind: 'LIST', msg: null });
  assert.deepEqual(parseCommand('uidl 9999999999'), { kind: 'UIDL', msg: 9999999999 });
  for (const bad of ['RETR 0', 'RETR 01', 'RETR +1', 'RETR 1.5', 'RETR 99999999999', 'DELE', 'TOP 1 -0', 'STAT 1', 'LIST  1', 'QUIT now']) {
    assert.equal(parseCommand(bad).kind, 'bad', bad);
  }
  assert.equal(parseCommand('TOP 1 99999999999999999999999').kind, 'TOP');
});

/** The dot-stuffed, terminated form of a wire-form body, written the plain way. */
function stuffedOracle(wire: Buffer): Buffer {
  const lines = wire.toString('latin1').split('\r\n');
  const last = lines.pop();
  assert.equal(last, '');
  return Buffer.from(lines.map((l) => (l.startsWith('.') ? '.' + l : l) + '\r\n').join('') + '.\r\n', 'latin1');
}

/** WireEdit over chunks, each edited in place as the worker does: the bytes sent and the wire octets it counted. */
function edited(chunks: Buffer[]): { out: Buffer; octets: number } {
  const e = new WireEdit();
  const parts = chunks.map((c) => editInPlace(c, (buf, start, end) => e.edit(buf, start, end)));
  parts.push(e.end());
  return { out: Buffer.concat(parts), octets: e.wireOctets };
}

test('WireEdit (C): the reference wire form, dot-stuffed and terminated, for every input whole and split around every CR, LF and "." and at random; its octets are WireSize\'s', () => {
  const dotty = ['', '.', '.\n', '..\r\n', 'a\r\n.\r\n.b\n', '.x\n\n.\r\n..\nend', '\r.\n.\r.', '.\r\n.\n'].map((t, i) => ({ name: `dots ${i}`, data: Buffer.from(t, 'latin1') }));
  for (const { name, data } of [...INPUTS, ...dotty]) {
    const want = stuffedOracle(referenceWire(data));
    const octets = wireSizeOf(data);
    const check = (chunks: Buffer[], how: string): void => {
      const r = edited(chunks);
      assert.ok(r.out.equals(want), `${name}: ${how}`);
      assert.equal(r.octets, octets, `${name}: octets, ${how}`);
    };
    check([data], 'whole');
    const around: number[] = [];
    for (let i = 0; i < data.length; i++) if (data[i] === 0x0a || data[i] === 0x0d || data[i] === 0x2e) around.push(i, i + 1);
    check(splitAt(data, around), 'split around CR, LF and "."');
    for (let round = 0; round < 5; round++) {
      const cuts = Array.from({ length: crypto.randomInt(1, 20) }, () => crypto.randomInt(0, data.length + 1));
      check([Buffer.alloc(0), ...splitAt(data, cuts), Buffer.alloc(0)], `split at ${cuts}`);
    }
  }
  // Many short messages of the bytes that matter, cut anywhere.
  for (let i = 0; i < 3000; i++) {
    const data = Buffer.from(Array.from({ length: crypto.randomInt(0, 40) }, () => [0x0d, 0x0a, 0x2e, 0x78][crypto.randomInt(0, 4)]));
    const cuts = Array.from({ length: crypto.randomInt(0, 6) }, () => crypto.randomInt(0, data.length + 1));
    const r = edited(splitAt(data, cuts));
    assert.ok(r.out.equals(stuffedOracle(referenceWire(data))), JSON.stringify(data.toString('latin1')));
    assert.equal(r.octets, wireSizeOf(data));
  }
});

test('WireEdit (C): without room for its edits it writes nothing and throws', () => {
  const buf = Buffer.from('\n.\n..');
  assert.throws(() => new WireEdit().edit(buf, 0, buf.length), RangeError);
  assert.equal(buf.toString(), '\n.\n..');
  assert.throws(() => new WireEdit().edit(buf, 4, 2), RangeError);
  assert.throws(() => new WireEdit().edit(buf, 0, 99), RangeError);
});

test('readWhole (RETR read ahead): what streamMessage sends, in a buffer of its own; null past its limit', () => {
  const dir = tmpdir('readwhole-');
  try {
    const room = Buffer.alloc(wholeRoom(300_000));
    for (const { name, data } of INPUTS) {
      const file = path.join(dir, 'm');
      fs.writeFileSync(file, data);
      const fd = fs.openSync(file, 'r');
      try {
        const r = readWhole(fd, 300_000, room);
        assert.ok(r !== null, name);
        assert.deepEqual(r.body, stuffedOracle(referenceWire(data)), name);
        assert.equal(r.octets, wireSizeOf(data), name);
        if (data.length > 0) assert.equal(readWhole(fd, data.length - 1, room), null, `${name}: one octet over the limit`);
      } finally {
        fs.closeSync(fd);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('TopLimiter: header, blank line, k lines; the cut is found across chunk edges', () => {
  const wire = wireOracle(Buffer.from('H: 1\nH: 2\n\nb1\nb2\r\nb3\n'));
  const cases: [number, string][] = [
    [0, 'H: 1\r\nH: 2\r\n\r\n'],
    [1, 'H: 1\r\nH: 2\r\n\r\nb1\r\n'],
    [3, wire.toString()],
    [Infinity, wire.toString()],
  ];
  for (const [k, want] of cases) {
    for (const step of [1, 2, 3, 4, 1000]) {
      const t = new TopLimiter(k);
      const parts: Buffer[] = [];
      for (let i = 0; i < wire.length && !t.finished; i += step) parts.push(t.take(wire.subarray(i, i + step)));
      assert.equal(Buffer.concat(parts).toString(), want, `k=${k} step ${step}`);
    }
  }
});

/** Both ends of a real Unix stream connection: the engine serves one, the test is the client on the other. */
async function socketPair(): Promise<{ server: net.Server; client: net.Socket; serverSide: net.Socket }> {
  const sock = path.join(tmpdir(), 'engine.sock');
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(sock, r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect(sock);
  return { server, client, serverSide: await accepted };
}

test('the engine in-process over a Unix socket pair: serve() answers, updates and ends on QUIT', async () => {
  const s = seedMaildir([Buffer.from('Subject: a\n\n.hi\n'), Buffer.from('Subject: b\n\nbye\n')]);
  const { server, client, serverSide } = await socketPair();
  const logs: string[] = [];
  const served = serve(serverSide, { user: 'bob', maildir: s.dir, idleTimeoutMs: 5000, log: new Logger((_, msg) => logs.push(msg), 1) });
  const pop = new Pop3Client(client);
  const greeting = await pop.line();
  assert.equal(greeting, '+OK bob has 2 messages (38 octets)');
  pop.send('RETR 1');
  const retr = await pop.reply(true);
  assert.deepEqual(retr.body, Buffer.from('Subject: a\r\n\r\n.hi\r\n'));
  const dele = await pop.cmd('DELE 2');
  assert.equal(dele, '+OK message 2 deleted');
  const quit = await pop.cmd('QUIT');
  assert.equal(quit, '+OK 1 messages deleted, 1 left');
  const summary = await served;
  // Every octet on the wire: the status lines, and the message dot-stuffed ("..hi") with its "." line.
  const wire = [greeting, retr.status, 'Subject: a', '', '..hi', '.', dele, quit].reduce((n, l) => n + Buffer.byteLength(l) + 2, 0);
  assert.deepEqual(summary, { outcome: 'quit', retrieved: 1, octetsSent: wire, deleted: 1, undeleted: 0 });
  assert.equal(fs.readdirSync(path.join(s.dir, 'cur')).length, 1);
  assert.match(logs.join('\n'), /session end user=bob ended=quit retrieved=1/);
  client.destroy();
  server.close();
});

test('openMessage finds a message another program moved from new/ to cur/ (with a flag) since it was listed, and follows it', () => {
  const s = seedMaildir([Buffer.from('Subject: moved\n\nbody\n')]);
  const unique = s.uniques[0];
  const m: Message = { unique, dir: 'new', file: unique, octets: 0, time: 0 };
  fs.renameSync(path.join(s.dir, 'new', unique), path.join(s.dir, 'cur', `${unique}:2,F`));
  const { fd } = openMessage(s.dir, m);
  try {
    assert.equal(fs.readFileSync(fd, 'latin1'), 'Subject: moved\n\nbody\n');
  } finally {
    fs.closeSync(fd);
  }
  assert.deepEqual([m.dir, m.file], ['cur', `${unique}:2,F`]);
  fs.unlinkSync(path.join(s.dir, 'cur', `${unique}:2,F`));
  assert.throws(() => openMessage(s.dir, m), { code: 'ENOENT' });
});

/** The sizes of the writes a stream makes to its handle (each _write or _writev is one write(2) or writev(2) request). */
function countWrites(sock: net.Socket): number[] {
  const sizes: number[] = [];
  const write = sock._write.bind(sock);
  sock._write = (chunk: Buffer, encoding, cb) => {
    sizes.push(chunk.length);
    write(chunk, encoding, cb);
  };
  const writev = sock._writev?.bind(sock);
  if (writev) {
    sock._writev = (chunks, cb) => {
      sizes.push(chunks.reduce((n, c) => n + (c.chunk as Buffer).length, 0));
      writev(chunks, cb);
    };
  }
  return sizes;
}

test('each answer leaves in as few writes as its size allows: one for a 50 KB RETR, whole 16 KB records for 10 MB', async (t) => {
  const dotted = (kb: number, eol: string): Buffer => Buffer.from(('a line of the message, long enough to be typical' + eol + '.a dotted line' + eol).repeat(Math.ceil((kb * 1024) / 64)));
  const bodies = [Buffer.concat([Buffer.from('Subject: 50 KB\n\n'), dotted(50, '\n')]), Buffer.concat([Buffer.from('Subject: 10 MB\n\n'), dotted(10 * 1024, '\n')]), Buffer.from('Subject: no change\r\n\r\n' + 'x'.repeat(100).concat('\r\n').repeat(600))];
  const s = seedMaildir(bodies);
  const { server, client, serverSide } = await socketPair();
  const writes = countWrites(serverSide);
  const served = serve(serverSide, { user: 'bob', maildir: s.dir, idleTimeoutMs: 5000, log: new Logger(() => undefined) });
  // A failed assertion must not leave the session waiting for the idle timeout.
  t.after(() => {
    client.destroy();
    server.close();
  });
  const pop = new Pop3Client(client);
  assert.match(await pop.line(), /^\+OK bob has 3 messages/);
  assert.deepEqual(writes.splice(0), [Buffer.byteLength(`+OK bob has 3 messages (${bodies.reduce((n, b) => n + wireOracle(b).length, 0)} octets)\r\n`)]);
  const retr = async (n: number): Promise<number[]> => {
    pop.send(`RETR ${n}`);
    const r = await pop.reply(true);
    const want = wireOracle(bodies[n - 1]);
    assert.equal(r.status, `+OK ${want.length} octets`);
    assert.ok(r.body!.equals(want), `RETR ${n}: bytes differ`);
    return writes.splice(0);
  };
  // Status line, message and "." together: one write, however the client reads it.
  assert.equal((await retr(1)).length, 1);
  assert.equal((await retr(3)).length, 1, 'a message that needs no change goes the same way');
  const big = await retr(2);
  assert.ok(big.length <= Math.ceil(big.reduce((a, b) => a + b, 0) / BLOCK), `${big.length} writes`);
  for (const n of big.slice(0, -1)) assert.equal(n % RECORD, 0, `a write of ${n} octets is not whole 16 KB records`);
  // Pipelined commands: their answers share a write.
  pop.sendRaw('STAT\r\nLIST\r\nUIDL 2\r\nTOP 1 0\r\n');
  await pop.line();
  await pop.reply(true);
  await pop.line();
  await pop.reply(true);
  assert.equal(writes.splice(0).length, 1);
  assert.equal(await pop.cmd('QUIT'), '+OK 0 messages deleted, 3 left');
  await served;
});
