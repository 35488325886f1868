/** The parts of popd and authpop that run in-process: the AUTHORIZATION state machine, line splitting, addresses, caps, the password check, authpop's handshake limit. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import bcrypt from 'bcryptjs';
import { Connection } from '@popd/authpop/connection';
import { escapeLog, Logger } from '@popd/shared/log';
import { PassThrough } from 'node:stream';
import { childLines } from '@popd/popd/childio';
import { MAX_CHILD_LINE } from '@popd/shared/params';
import { newSession, refusal, refusedLine, step } from '@popd/authpop/authorization';
import { ConnLimits } from '@popd/popd/limits';
import { parseAddress } from '@popd/popd/options';
import { BcryptPool } from '@popd/popd/bcryptpool';
import { dummySalt, Verifier } from '@popd/popd/verifier';
import { Pop3Client } from './lib/pop3';
import { makeCert } from './lib/popd';
import { tmpdir } from './lib/util';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

test('session: credentials only after TLS; STLS once and only on a plain port', () => {
  const s = newSession('stls');
  assert.deepEqual(step(s, 'USER a'), { t: 'reply', lines: ['-ERR [AUTH] credentials are refused before STLS'] });
  assert.equal(step(s, `AUTH PLAIN ${b64('\0a\0b')}`).t, 'reply');
  assert.deepEqual(step(s, 'stls'), { t: 'stls' });
  assert.match((step(s, 'STLS') as { lines: string[] }).lines[0], /^-ERR/);
  assert.deepEqual(step(s, 'USER a'), { t: 'reply', lines: ['+OK send PASS'] });
  assert.deepEqual(step(s, 'PASS pass with spaces'), { t: 'auth', user: 'a', pass: 'pass with spaces' });
  assert.match((step(s, 'PASS again') as { lines: string[] }).lines[0], /USER first/);
  const t = newSession('tls');
  assert.match((step(t, 'STLS') as { lines: string[] }).lines[0], /^-ERR/);
});

test('session: AUTH PLAIN forms, "=" and "*", malformed responses', () => {
  const s = newSession('tls');
  assert.deepEqual(step(s, `AUTH plain ${b64('\0bob\0pw')}`), { t: 'auth', user: 'bob', pass: 'pw' });
  assert.deepEqual(step(s, 'AUTH PLAIN'), { t: 'reply', lines: ['+ '] });
  assert.deepEqual(step(s, b64('bob\0bob\0p w')), { t: 'auth', user: 'bob', pass: 'p w' });
  step(s, 'AUTH PLAIN');
  assert.match((step(s, '*') as { lines: string[] }).lines[0], /^-ERR/);
  for (const bad of ['=', 'not base64!', b64('only\0two'), b64('\0\0pw'), b64('x\0y\0pw')]) {
    const r = step(s, `AUTH PLAIN ${bad}`);
    assert.equal(r.t, 'reply', bad);
    assert.match((r as { lines: string[] }).lines[0], /^-ERR /, bad);
  }
  assert.match((step(s, 'AUTH PLAIN a b') as { lines: string[] }).lines[0], /^-ERR /);
  assert.deepEqual(step(s, 'QUIT'), { t: 'quit' });
  // A line the reader refuses (a NUL, too long) ends the exchange like any bad response: the next line is a command.
  for (const answer of ['-ERR invalid character in command', '-ERR line too long']) {
    step(s, 'AUTH PLAIN');
    assert.deepEqual(refusedLine(s, answer), { t: 'reply', lines: [answer] });
    assert.equal((step(s, 'CAPA') as { lines: string[] }).lines[0], '+OK capability list follows', answer);
  }
});

test('session: a refused login is answered at once after a right password, else after the delay; the third failure closes', () => {
  const s = newSession('tls');
  assert.deepEqual(refusal(s, 'IN-USE', 'mailbox already in use by another session'), { t: 'answer', line: '-ERR [IN-USE] mailbox already in use by another session' });
  assert.deepEqual(refusal(s, 'SYS/PERM', 'this server cannot serve this user'), { t: 'answer', line: '-ERR [SYS/PERM] this server cannot serve this user' });
  assert.deepEqual(refusal(s, 'AUTH', 'x'), { t: 'delay', line: '-ERR [AUTH] invalid user name or password', close: false });
  assert.deepEqual(refusal(s, 'SYS/TEMP', 'server busy, try again later'), { t: 'delay', line: '-ERR [SYS/TEMP] server busy, try again later', close: false });
  assert.deepEqual(refusal(s, 'AUTH', 'x'), { t: 'delay', line: '-ERR [AUTH] invalid user name or password', close: true });
});

test('addresses: IPv4 or [IPv6], optional port', () => {
  assert.deepEqual(parseAddress('127.0.0.1', 995), { host: '127.0.0.1', port: 995 });
  assert.deepEqual(parseAddress('[::1]:110', 995), { host: '::1', port: 110 });
  for (const bad of ['::1', 'localhost', '1.2.3.4:0', '1.2.3.4:70000', '[1.2.3.4]', '1.2.3', '']) assert.equal(parseAddress(bad, 995), null, bad);
});

test('limits: global and per network, freed on close; the oldest that may go, of a network or of all', () => {
  const l = new ConnLimits(3, 2);
  l.add('a', '1.1.1.1');
  l.add('b', '1.1.1.1');
  assert.equal(l.admit('1.1.1.1'), 'network');
  assert.equal(l.admit('2.2.2.2'), 'ok');
  l.add('c', '2.2.2.2');
  assert.equal(l.admit('3.3.3.3'), 'total');
  assert.equal(l.admit('1.1.1.1'), 'network', 'the network first: room made there is room in all');
  assert.equal(l.netOf('c'), '2.2.2.2');
  const all = (): boolean => true;
  assert.equal(l.oldest('2.2.2.2', all), 'c');
  assert.equal(l.oldest(null, all), 'a');
  assert.equal(l.oldest(null, (id) => id !== 'a'), 'b');
  assert.equal(l.oldest('1.1.1.1', (id) => id === 'c'), null);
  assert.equal(l.oldest('3.3.3.3', all), null);
  l.remove('a');
  l.remove('a');
  assert.equal(l.admit('1.1.1.1'), 'ok');
  assert.equal(l.size, 2);
  assert.equal(l.oldest('1.1.1.1', all), 'b');
});

test('verifier on a bcrypt thread: right, wrong, unknown user, $2y$, a full queue, a refused salt', async () => {
  const hash = bcrypt.hashSync('pw', 4);
  const salt = dummySalt([hash]);
  assert.match(salt, /^\$2b\$04\$/);
  const pool = new BcryptPool(1);
  const v = new Verifier(1, 1, (pass, s) => pool.hash(pass, s));
  assert.equal(await v.check(hash, salt, 'pw'), true);
  assert.equal(await v.check(hash, salt, 'pW'), false);
  assert.equal(await v.check(undefined, salt, 'pw'), false);
  assert.equal(await v.check('$2y$' + hash.slice(4), salt, 'pw'), true);
  const three = [v.check(hash, salt, 'pw'), v.check(hash, salt, 'pw'), v.check(hash, salt, 'pw')];
  assert.deepEqual(await Promise.all(three), [true, true, null]);
  assert.equal(await v.check('$2b$04$' + '!'.repeat(53), salt, 'pw'), false);
  assert.equal(await v.check(hash, salt, 'pw'), true, 'the thread still works');
  await pool.close();
});

test('verifier: unknown users and every failure cost the work of the most expensive hash in authtab', async () => {
  const cost = (h: string): number => Number(h.slice(4, 6));
  const mixed = [bcrypt.hashSync('a', 4), bcrypt.hashSync('b', 4), bcrypt.hashSync('c', 4), `$2y$13$${'a'.repeat(53)}`];
  const top = dummySalt(mixed);
  assert.match(top, /^\$2b\$13\$[./A-Za-z0-9]{22}$/, 'the majority cost is 4, the maximum 13');
  assert.equal(bcrypt.getRounds(top), 13, 'bcryptjs takes it as a salt');
  assert.match(dummySalt([]), /^\$2b\$10\$/);
  // A real bcrypt thread, with the salts of each hash it computes recorded.
  const hash = bcrypt.hashSync('pw', 4);
  const salt = dummySalt([hash, bcrypt.hashSync('other', 7)]);
  const pool = new BcryptPool(1);
  const costs: number[] = [];
  const v = new Verifier(1, 1, (pass, s) => {
    costs.push(cost(s));
    return pool.hash(pass, s);
  });
  const work = async (h: string | undefined, pass: string, expect: boolean): Promise<number> => {
    costs.length = 0;
    assert.equal(await v.check(h, salt, pass), expect);
    return costs.reduce((sum, c) => sum + 2 ** c, 0);
  };
  assert.equal(await work(undefined, 'pw', false), 2 ** 7, 'an unknown user');
  assert.equal(await work(hash, 'wrong', false), 2 ** 7, 'a cost-4 user who failed');
  assert.deepEqual(costs, [4, 4, 5, 6]);
  assert.equal(await work(hash, 'pw', true), 2 ** 4, 'a success is not padded');
  await pool.close();
});

/** authpop's Connection on a real accepted TCP socket with a real TLS context; timeouts shortened. */
async function handshakeStall(mode: 'tls' | 'stls'): Promise<{ logs: string[]; ms: number }> {
  const dir = tmpdir();
  const { cert, key } = makeCert(dir);
  const ctx = tls.createSecureContext({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), minVersion: 'TLSv1.3' });
  const logs: string[] = [];
  const server = net.createServer((sock) => {
    new Connection(sock, { t: 'conn', id: '1', address: '127.0.0.1', port: 1, mode }, {
      ctx,
      loginTimeoutMs: 20_000,
      failDelayMs: 10,
      handshakeTimeoutMs: 300,
      log: new Logger((_, msg) => logs.push(msg), 2),
      askPopd: () => assert.fail('no credentials were sent'),
      closed: () => undefined,
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = new Pop3Client(net.connect((server.address() as net.AddressInfo).port, '127.0.0.1'));
  const t0 = Date.now();
  if (mode === 'stls') {
    assert.match(await client.line(), /^\+OK/);
    assert.match(await client.cmd('STLS'), /^\+OK/);
  }
  // Never send a ClientHello.
  await client.rest();
  const ms = Date.now() - t0;
  server.close();
  fs.rmSync(dir, { recursive: true });
  return { logs, ms };
}

for (const mode of ['tls', 'stls'] as const) {
  test(`authpop: a TLS handshake that does not finish in time is dropped (${mode === 'tls' ? 'implicit TLS' : 'after STLS'}), long before the login timeout`, async () => {
    const { logs, ms } = await handshakeStall(mode);
    assert.ok(logs.some((l) => /TLS handshake timeout from 127\.0\.0\.1:1/.test(l)), logs.join('\n'));
    assert.ok(ms < 10_000, `closed after ${ms} ms`);
  });
}

test('escapeLog: printable ASCII stays, everything else is escaped without loss', () => {
  assert.equal(escapeLog('user alice from 127.0.0.1'), 'user alice from 127.0.0.1');
  assert.equal(escapeLog('a\\x0a\nb'), 'a\\\\x0a\\x0ab', 'a backslash cannot pass for an escape');
  assert.equal(escapeLog('\u2028\u010a\x7f\u{1F600}\x1b[2J'), '\\u{2028}\\u{10a}\\x7f\\u{1f600}\\x1b[2J');
  assert.doesNotMatch(escapeLog(String.fromCharCode(...Array.from({ length: 0x300 }, (_, i) => i))), /[^\x20-\x7e]/);
});

test('childLines: lines of a child\'s stderr, each cut to a bounded length, however long the line', async () => {
  const input = new PassThrough();
  const lines: string[] = [];
  childLines(input, (l) => lines.push(l));
  input.write('first\nsec');
  input.write('ond\n');
  for (let i = 0; i < 64; i++) input.write('x'.repeat(64 * 1024)); // 4 MB without a newline
  input.write('y\nafter\nno newline at the end');
  input.end();
  await new Promise((r) => input.once('end', r));
  assert.deepEqual(lines, ['first', 'second', `${'x'.repeat(MAX_CHILD_LINE)} [line cut]`, 'after', 'no newline at the end']);
});
