/**
 * RETR's wire form over a real socketpair: for a corpus of awkward messages,
 * the unstuffed output equals the file with CRLF line endings (an oracle
 * written independently of shared/wire.ts), and its length equals LIST's.
 * The client refuses any line that starts with an unstuffed ".".
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { seedMaildir, wireOracle, removeSeeded } from '../lib/maildirs';
import { login, quit, killWorkers } from '../lib/worker';

after(() => {
  killWorkers();
  removeSeeded();
});

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
/** Buffer sizes a reader is likely to use: line ends and dots split across them. */
const EDGES = [64 * 1024, 128 * 1024];

const corpus: [string, Buffer][] = [
  ['empty', b('')],
  ['lone dot', b('.')],
  ['dot line', b('.\n')],
  ['dot CRLF', b('.\r\n')],
  ['two dots', b('..\n')],
  ['dot lines everywhere', b('.start\n..two\n.\n...\r\n.\r\nend.\n.')],
  ['terminator inside', b('Subject: x\n\nbefore\r\n.\r\nafter\n')],
  ['CRLF and LF mixed', b('a\r\nb\nc\r\n\nd\r\n\r\n\n')],
  ['no final newline', b('Subject: y\n\nno newline at the end')],
  ['lone CRs', b('a\rb\nc\r\r\nd\r')],
  ['only newlines', b('\n\n\r\n\n')],
  ['8-bit and NUL', Buffer.concat([b('Subject: \xe9t\xe9\n\n'), Buffer.from([0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x2e, 0x00, 0x0d, 0x0a, 0x2e, 0x2e])])],
  ...EDGES.flatMap((e): [string, Buffer][] => [
    [`CR|LF at ${e}`, Buffer.concat([b('x'.repeat(e - 1)), b('\r\n.after\n')])],
    [`LF|dot at ${e}`, Buffer.concat([b('x'.repeat(e - 1)), b('\n.dot at the chunk start\n')])],
    [`bare LF|dot at ${e}`, Buffer.concat([b('x'.repeat(e)), b('\n..\n')])],
  ]),
];

test('awkward messages: unstuffed RETR equals the CRLF form of the file, and LIST octets equal its length', async () => {
  const s = seedMaildir(corpus.map(([, body]) => body));
  const w = await login(s.dir);
  for (let i = 0; i < corpus.length; i++) {
    const [name, body] = corpus[i];
    const want = wireOracle(body);
    assert.equal(await w.pop.cmd(`LIST ${i + 1}`), `+OK ${i + 1} ${want.length}`, name);
    w.pop.send(`RETR ${i + 1}`);
    const r = await w.pop.reply(true);
    assert.equal(r.status, `+OK ${want.length} octets`, name);
    assert.deepEqual(r.body, want, name);
    w.pop.send(`TOP ${i + 1} 99999999999999999999`);
    assert.deepEqual((await w.pop.reply(true)).body, want, `${name}: TOP with k past the end`);
  }
  await quit(w);
});

test('a 50 MB message of random bytes (NULs, lone CRs, dots after LF, 8-bit) streams through intact', async () => {
  const body = crypto.randomBytes(50 * 1024 * 1024);
  // More lines starting with a dot than chance gives.
  for (let i = 1000; i < body.length; i += 7919) body.write('\n.', i - 2, 'latin1');
  body[body.length - 1] = 0x2e;
  const want = wireOracle(body);
  const s = seedMaildir([body], { sizes: false });
  const w = await login(s.dir);
  assert.equal(w.greeting, `+OK alice has 1 messages (${want.length} octets)`);
  w.pop.send('RETR 1');
  const r = await w.pop.reply(true);
  assert.equal(r.body!.length, want.length);
  assert.ok(r.body!.equals(want), 'content differs');
  await quit(w);
});
