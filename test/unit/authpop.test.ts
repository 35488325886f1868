/** authpop in-process: the AUTHORIZATION state machine (pure) and a Connection on a real TCP socket. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { Connection } from '@popd/authpop/connection';
import { newSession, refusal, refusedLine, step } from '@popd/authpop/authorization';
import { Logger } from '@popd/shared/log';
import { Pop3Client } from '../lib/pop3';
import { makeCert } from '../lib/popd';
import { tmpdir } from '../lib/util';

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

/** authpop's Connection on a real accepted TCP socket with a real TLS context; timeouts shortened. */
async function handshakeStall(mode: 'tls' | 'stls'): Promise<string[]> {
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
  if (mode === 'stls') {
    assert.match(await client.line(), /^\+OK/);
    assert.match(await client.cmd('STLS'), /^\+OK/);
  }
  // Never send a ClientHello.
  await client.rest();
  server.close();
  fs.rmSync(dir, { recursive: true });
  return logs;
}

for (const mode of ['tls', 'stls'] as const) {
  test(`authpop: a TLS handshake that does not finish in time is dropped (${mode === 'tls' ? 'implicit TLS' : 'after STLS'}), long before the login timeout`, async () => {
    const logs = await handshakeStall(mode);
    // Which limit fired is in the log: the handshake's, not the login's (no clock is asserted).
    assert.ok(logs.some((l) => /TLS handshake timeout from 127\.0\.0\.1:1/.test(l)), logs.join('\n'));
    assert.ok(!logs.some((l) => /login timeout/.test(l)), logs.join('\n'));
  });
}
