/** popd + authpop + wrkrpop over real TLS: the AUTHORIZATION state, STLS, login rules, pipelining, limits. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { PopdFixture } from '../lib/popd';
import { connectPlain, connectTls, connectTlsFrom, login, stls } from '../lib/pop3tls';
import { Pop3Client } from '../lib/pop3';
import { MAILUSER } from '../lib/util';
import { waitFor } from '../lib/mailhost';
import { inodesTo, tree } from '../lib/proc';

const msg = (i: number): string => `From: sender@example.org\nTo: alice@example.org\nSubject: message ${i}\n\nline one of ${i}\n.starts with a dot\n`;
const crlf = (s: string): string => s.replace(/\n/g, '\r\n');
const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('one popd', () => {
  let p: PopdFixture;
  before(async () => {
    p = await PopdFixture.start({
      accounts: [
        { user: 'alice', pass: 'alice pw', messages: [msg(1), msg(2), msg(3)] },
        { user: 'bob', pass: 'bob-pw', messages: [msg(4)] },
        { user: 'carol', pass: 'carol-pw' },
      ],
    });
  });
  after(async () => {
    assert.equal((await p.stop()).code, 0);
  });

  test('implicit TLS: greeting, CAPA, login, STAT/LIST/UIDL/RETR, QUIT', async () => {
    const c = await connectTls(p.tlsPort);
    assert.match(await c.line(), /^\+OK/);
    assert.match(await c.cmd('CAPA'), /^\+OK/);
    const caps = (await c.multi()).toString().split('\r\n').filter((l) => l !== '');
    for (const cap of ['USER', 'SASL PLAIN', 'TOP', 'UIDL', 'PIPELINING', 'RESP-CODES', 'AUTH-RESP-CODE']) assert.ok(caps.includes(cap), cap);
    assert.ok(!caps.includes('STLS'), 'no STLS on an implicit-TLS port');
    assert.ok(caps.some((l) => l.startsWith('IMPLEMENTATION')));
    assert.match(await login(c, 'alice', 'alice pw'), /^\+OK/);
    const octets = [1, 2, 3].map((i) => Buffer.byteLength(crlf(msg(i))));
    assert.equal(await c.cmd('STAT'), `+OK 3 ${octets.reduce((a, b) => a + b)}`);
    assert.match(await c.cmd('LIST'), /^\+OK/);
    assert.equal((await c.multi()).toString(), octets.map((n, i) => `${i + 1} ${n}\r\n`).join(''));
    assert.match(await c.cmd('UIDL'), /^\+OK/);
    assert.match((await c.multi()).toString(), /^1 [0-9a-f]{64}\r\n2 [0-9a-f]{64}\r\n3 [0-9a-f]{64}\r\n$/);
    assert.match(await c.cmd('RETR 2'), /^\+OK/);
    assert.equal((await c.multi()).toString(), crlf(msg(2)));
    assert.match(await c.cmd('QUIT'), /^\+OK/);
    assert.equal((await c.rest()).length, 0);
  });

  test('STLS: no credentials before it, CAPA changes after it, login over TLS', async () => {
    const c = await connectPlain(p.stlsPort);
    assert.match(await c.line(), /^\+OK/);
    assert.match(await c.cmd('CAPA'), /^\+OK/);
    const before = (await c.multi()).toString();
    assert.match(before, /^STLS\r$/m);
    assert.doesNotMatch(before, /^USER\r$/m);
    assert.match(await c.cmd('USER alice'), /^-ERR/);
    assert.match(await c.cmd('PASS alice pw'), /^-ERR/);
    assert.match(await c.cmd(`AUTH PLAIN ${b64('\0alice\0alice pw')}`), /^-ERR/);
    assert.match(await c.cmd('STAT'), /^-ERR/);
    const { answer, tls } = await stls(c);
    assert.match(answer, /^\+OK/);
    assert.ok(tls);
    assert.match(await tls.cmd('CAPA'), /^\+OK/);
    const afterCaps = (await tls.multi()).toString();
    assert.match(afterCaps, /^USER\r$/m);
    assert.doesNotMatch(afterCaps, /^STLS\r$/m);
    assert.match(await tls.cmd('STLS'), /^-ERR/);
    assert.match(await login(tls, 'bob', 'bob-pw'), /^\+OK/);
    assert.match(await tls.cmd('STAT'), /^\+OK 1 /);
    assert.match(await tls.cmd('QUIT'), /^\+OK/);
  });

  test('bytes sent after STLS in the same packet are discarded (CVE-2011-0411)', async () => {
    const c = await connectPlain(p.stlsPort);
    await c.line();
    const { tls } = await stls(c, 'USER alice\r\n');
    assert.ok(tls);
    // Had the injected USER been executed, this PASS would log in.
    assert.match(await tls.cmd('PASS alice pw'), /^-ERR/);
    assert.match(await login(tls, 'alice', 'alice pw'), /^\+OK/);
    await tls.cmd('QUIT');
  });

  test('unknown user and wrong password get the same answer; the third failure closes', async () => {
    const c = await connectTls(p.tlsPort);
    await c.line();
    const wrong = await login(c, 'alice', 'not it');
    const unknown = await login(c, 'mallory', 'alice pw');
    assert.match(wrong, /^-ERR \[AUTH\] /);
    assert.equal(unknown, wrong);
    assert.equal(await login(c, 'alice', ''), wrong);
    assert.equal((await c.rest()).length, 0, 'closed after three failures');
    assert.ok(!p.log.some((l) => l.includes('not it') || l.includes('alice pw')), 'no password in the log');
  });

  test('AUTH PLAIN with an initial response, with the "+ " continuation, and cancelled with "*"', async () => {
    const c = await connectTls(p.tlsPort);
    await c.line();
    assert.equal(await c.cmd('AUTH PLAIN'), '+ ');
    assert.match(await c.cmd('*'), /^-ERR/);
    assert.match(await c.cmd('AUTH CRAM-MD5'), /^-ERR/);
    assert.match(await c.cmd('AUTH PLAIN not*base64'), /^-ERR/);
    assert.equal(await c.cmd('AUTH PLAIN'), '+ ');
    assert.match(await c.cmd(b64('\0carol\0carol-pw')), /^\+OK/);
    assert.match(await c.cmd('STAT'), /^\+OK 0 0/);
    await c.cmd('QUIT');
    const d = await connectTls(p.tlsPort);
    await d.line();
    assert.match(await d.cmd(`AUTH PLAIN ${b64('carol\0carol\0carol-pw')}`), /^\+OK/);
    await d.cmd('QUIT');
    const e = await connectTls(p.tlsPort);
    await e.line();
    assert.match(await e.cmd(`AUTH PLAIN ${b64('bob\0carol\0carol-pw')}`), /^-ERR \[AUTH\]/, 'no proxy authorization');
    assert.match(await e.cmd(`AUTH PLAIN ${b64('\0carol\0wrong')}`), /^-ERR \[AUTH\]/);
    await e.cmd('QUIT');
  });

  test('TLS 1.2 is refused', async () => {
    await assert.rejects(connectTls(p.tlsPort, { maxVersion: 'TLSv1.2' }));
    const c = await connectPlain(p.stlsPort);
    await c.line();
    c.send('STLS');
    assert.match(await c.line(), /^\+OK/);
    await assert.rejects(
      new Promise((resolve, reject) => {
        const t = tls.connect({ socket: c.io as net.Socket, rejectUnauthorized: false, maxVersion: 'TLSv1.2' }, () => resolve(t));
        t.once('error', reject);
      }),
    );
  });

  test('USER/PASS/STAT/LIST/QUIT pipelined in one write', async () => {
    const c = await connectTls(p.tlsPort);
    await c.line();
    c.sendRaw('USER bob\r\nPASS bob-pw\r\nSTAT\r\nLIST\r\nQUIT\r\n');
    assert.match(await c.line(), /^\+OK/, 'USER');
    assert.match(await c.line(), /^\+OK/, 'PASS (the worker)');
    const size = Buffer.byteLength(crlf(msg(4)));
    assert.equal(await c.line(), `+OK 1 ${size}`);
    assert.match(await c.line(), /^\+OK/);
    assert.equal((await c.multi()).toString(), `1 ${size}\r\n`);
    assert.match(await c.line(), /^\+OK/, 'QUIT');
    assert.equal((await c.rest()).length, 0);
  });

  test('a client that half-closes right after its pipelined commands still gets every answer, before and after login', async () => {
    const c = await connectTls(p.tlsPort);
    await c.line();
    // Log lines of this test's sessions only: bob and carol had sessions in the tests before.
    const mark = p.log.length;
    c.sendRaw('USER bob\r\nPASS bob-pw\r\nSTAT\r\nQUIT\r\n');
    c.io.end();
    const size = Buffer.byteLength(crlf(msg(4)));
    assert.match((await c.rest()).toString(), new RegExp(`^\\+OK send PASS\r\n\\+OK [^\r]*\r\n\\+OK 1 ${size}\r\n\\+OK [^\r]*\r\n$`));
    await p.waitLog(/wrkrpop\[\d+\].*session end user=bob ended=quit/, mark);
    const d = await connectTls(p.tlsPort);
    await d.line();
    assert.match(await login(d, 'carol', 'carol-pw'), /^\+OK/);
    d.sendRaw('STAT\r\nNOOP\r\n');
    d.io.end();
    assert.match((await d.rest()).toString(), /^\+OK 0 0\r\n\+OK[^\r]*\r\n$/);
    await p.waitLog(/wrkrpop\[\d+\].*session end user=carol ended=eof/, mark);
    const e = await connectTls(p.tlsPort);
    await e.line();
    e.io.end();
    assert.equal((await e.rest()).length, 0, 'a client that only half-closes is closed');
  });

  test('after the worker ends, a client that never closes its side is closed by the server', { timeout: 30_000 }, async () => {
    // TLS over a TCP socket that stays open for writing after the server's end.
    const raw = net.connect({ host: '127.0.0.1', port: p.tlsPort, allowHalfOpen: true });
    await new Promise((r) => raw.once('connect', r));
    const c = await connectTls(p.tlsPort, { socket: raw });
    await c.line();
    assert.match(await login(c, 'carol', 'carol-pw'), /^\+OK/);
    const port = raw.localPort!;
    const held = (): boolean => {
      const inodes = inodesTo(port).map((i) => `socket:[${i}]`);
      return tree(p.proc.pid!).some((x) => x.fds.some((fd) => inodes.includes(fd)));
    };
    assert.ok(held(), 'during the session the server holds the connection');
    // The worker closes a line flood.
    c.sendRaw('A'.repeat(256 * 1024));
    assert.match((await c.rest()).toString(), /too many over-long lines/);
    // authpop gives the client at most 10 s to end its side, then closes the socket (and popd frees the slot).
    await waitFor('the server to close the connection', () => !held(), 15_000);
  });

  test('the answer to a line flood reaches the client every time, though the client is still sending (30 sessions)', { timeout: 60_000 }, async () => {
    // The worker ends the session with bytes of the flood unread; authpop's next write to it failed,
    // and authpop dropped its end before reading the answer: 7 of 60 such sessions lost it.
    const lost: number[] = [];
    for (let i = 0; i < 30; i++) {
      const c = await connectTls(p.tlsPort);
      await c.line();
      assert.match(await login(c, 'carol', 'carol-pw'), /^\+OK/);
      c.sendRaw('A'.repeat(256 * 1024));
      if (!/too many over-long lines/.test((await c.rest()).toString())) lost.push(i);
      c.io.destroy();
    }
    assert.deepEqual(lost, []);
  });

  test('a second session for the same user gets [IN-USE]; after QUIT the user can log in again', async () => {
    const a = await connectTls(p.tlsPort);
    await a.line();
    assert.match(await login(a, 'carol', 'carol-pw'), /^\+OK/);
    const b = await connectTls(p.tlsPort);
    await b.line();
    assert.match(await login(b, 'carol', 'carol-pw'), /^-ERR \[IN-USE\]/);
    // Many logins waiting at once for the session to end: each is refused, and popd stays quiet about listeners.
    const many = await Promise.all(Array.from({ length: 12 }, () => connectTls(p.tlsPort)));
    for (const m of many) await m.line();
    const answers = await Promise.all(many.map((m) => login(m, 'carol', 'carol-pw')));
    for (const a of answers) assert.match(a, /^-ERR \[IN-USE\]/);
    for (const m of many) m.io.destroy();
    assert.ok(!p.log.some((l) => /MaxListeners/.test(l)), p.log.filter((l) => /MaxListeners/.test(l)).join('\n'));
    const mark = p.log.length;
    await a.cmd('QUIT');
    await a.rest();
    await p.waitLog(/wrkrpop\[\d+\].*session end user=carol/, mark);
    // The slot is freed when the worker exits, a moment after its last line.
    let answer = '';
    for (let i = 0; i < 50 && !answer.startsWith('+OK'); i++) {
      answer = await login(b, 'carol', 'carol-pw');
      if (!answer.startsWith('+OK')) await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(answer, /^\+OK/);
    await b.cmd('QUIT');
  });

  test('before login as after: a line over 255 octets is refused and the session goes on; the eleventh closes it; a NUL is refused', async () => {
    const c = await connectTls(p.tlsPort);
    await c.line();
    assert.equal(await c.cmd('USER ' + 'a'.repeat(300)), '-ERR line too long');
    assert.equal(await c.cmd('US\0ER a'), '-ERR invalid character in command');
    assert.match(await c.cmd('CAPA'), /^\+OK/);
    await c.multi();
    c.sendRaw(('NOOP ' + 'x'.repeat(400) + '\r\n').repeat(12));
    assert.equal((await c.rest()).toString(), '-ERR line too long\r\n'.repeat(9) + '-ERR too many over-long lines, closing\r\n');
  });

  test('unknown commands and transaction commands before login get -ERR, the session goes on', async () => {
    const c = await connectTls(p.tlsPort);
    await c.line();
    for (const cmd of ['NOOP', 'RETR 1', 'APOP alice 0123456789abcdef0123456789abcdef', 'XYZZY', '']) assert.match(await c.cmd(cmd), /^-ERR/, cmd);
    assert.match(await c.cmd('PASS x'), /^-ERR/, 'PASS without USER');
    assert.match(await c.cmd('quit'), /^\+OK/);
  });
});

describe('limits and timeouts', () => {
  let p: PopdFixture;
  before(async () => {
    p = await PopdFixture.start({ accounts: [{ user: 'dave', pass: 'dave-pw' }], args: ['-t', '1'] });
  });
  after(async () => {
    assert.equal((await p.stop()).code, 0);
  });

  test('login timeout closes the connection', async () => {
    const c = await connectTls(p.tlsPort);
    assert.match(await c.line(), /^\+OK/);
    assert.match((await c.rest()).toString(), /^-ERR .*timeout/);
  });
});

const EVICTED = '-ERR [SYS/TEMP] connection closed to make room';

describe('over the per-address cap (-M 5) the oldest connection not logged in makes room', () => {
  let p: PopdFixture;
  const users = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
  before(async () => {
    p = await PopdFixture.start({ accounts: users.map((u) => ({ user: u, pass: `${u}-pw` })), args: ['-M', '5'] });
  });
  after(async () => {
    assert.equal((await p.stop()).code, 0);
  });

  test('a fresh login beside 5 idle connections from its address succeeds; the oldest idle one is told why', async () => {
    const mark = p.log.length;
    const idle: Pop3Client[] = [];
    for (let i = 0; i < 5; i++) {
      const c = i % 2 === 0 ? await connectTls(p.tlsPort) : await connectPlain(p.stlsPort);
      assert.match(await c.line(), /^\+OK/);
      if (i === 1) {
        assert.match(await c.cmd('CAPA'), /^\+OK/);
        await c.multi();
      }
      idle.push(c);
    }
    const fresh = await connectTls(p.tlsPort);
    assert.match(await fresh.line(), /^\+OK/);
    assert.equal(await idle[0].line(), EVICTED);
    assert.equal((await idle[0].rest()).length, 0, 'and closed');
    assert.match(await login(fresh, 'u6', 'u6-pw'), /^\+OK/);
    // The next one makes room the same way: the oldest left is idle[1] (plain, after CAPA); the logged-in one stays.
    const next = await connectTls(p.tlsPort);
    assert.match(await next.line(), /^\+OK/);
    assert.equal(await idle[1].line(), EVICTED);
    for (const c of [...idle.slice(2), next]) assert.match(await c.cmd('NOOP'), /^-ERR/, 'still open (NOOP before login)');
    assert.match(await fresh.cmd('STAT'), /^\+OK 0 0/);
    assert.match(await fresh.cmd('QUIT'), /^\+OK/);
    for (const c of [...idle, next]) c.io.destroy();
    await p.waitLog(/too many connections \(address limit\), closing the oldest one not logged in/, mark);
  });

  test('logged-in sessions are never evicted: with 5 of them the next connection is refused, and admitted once one ends', async () => {
    // From 127.0.0.3: the per-address cap counts it apart from the connections of the test before.
    const sessions: Pop3Client[] = [];
    for (const u of users.slice(0, 5)) {
      const c = await connectTlsFrom('127.0.0.3', p.tlsPort);
      await c.line();
      assert.match(await login(c, u, `${u}-pw`), /^\+OK/);
      sessions.push(c);
    }
    const refused = await connectTlsFrom('127.0.0.3', p.tlsPort);
    assert.equal(await refused.line(), '-ERR [SYS/TEMP] too many connections');
    for (const c of sessions) assert.match(await c.cmd('STAT'), /^\+OK 0 0/, 'every session still open');
    assert.match(await sessions[0].cmd('QUIT'), /^\+OK/);
    // Once authpop reports it closed, the slot is free again.
    let greeting = '';
    for (let i = 0; i < 50 && !greeting.startsWith('+OK'); i++) {
      const d = await connectTlsFrom('127.0.0.3', p.tlsPort);
      greeting = await d.line();
      d.io.destroy();
      if (!greeting.startsWith('+OK')) await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(greeting, /^\+OK/);
    for (const c of sessions.slice(1)) assert.match(await c.cmd('QUIT'), /^\+OK/);
  });
});

describe('over the global cap (-m 4) the oldest connection not logged in, from any address, makes room', () => {
  let p: PopdFixture;
  const users = ['c1', 'c2', 'c3', 'c4'];
  before(async () => {
    p = await PopdFixture.start({ accounts: users.map((u) => ({ user: u, pass: `${u}-pw` })), args: ['-m', '4'] });
  });
  after(async () => {
    assert.equal((await p.stop()).code, 0);
  });

  test('an idle connection from another address goes; when all are logged in, the next is refused', async () => {
    const open = async (from: string): Promise<Pop3Client> => {
      const c = await connectTlsFrom(from, p.tlsPort);
      assert.match(await c.line(), /^\+OK/);
      return c;
    };
    const a1 = await open('127.0.0.1');
    const a2 = await open('127.0.0.2');
    assert.match(await login(a2, 'c1', 'c1-pw'), /^\+OK/);
    const a3 = await open('127.0.0.1');
    const a4 = await open('127.0.0.2');
    const n1 = await open('127.0.0.4');
    assert.equal(await a1.line(), EVICTED);
    assert.match(await login(n1, 'c2', 'c2-pw'), /^\+OK/);
    assert.match(await login(a3, 'c3', 'c3-pw'), /^\+OK/);
    assert.match(await login(a4, 'c4', 'c4-pw'), /^\+OK/);
    const n2 = await connectTlsFrom('127.0.0.4', p.tlsPort);
    assert.equal(await n2.line(), '-ERR [SYS/TEMP] too many connections');
    for (const c of [a2, n1, a3, a4]) assert.match(await c.cmd('QUIT'), /^\+OK/);
  });
});

describe('unprivileged mode', () => {
  let p: PopdFixture;
  before(async () => {
    p = await PopdFixture.start({ accounts: [{ user: 'ivan', pass: 'ivan-pw', messages: ['Subject: hi\n\nhi\n'] }, { user: 'judy', pass: 'judy-pw' }], mode: 'unprivileged' });
  });
  after(async () => {
    assert.equal((await p.stop()).code, 0);
  });

  test('warns, serves users of its own uid, and answers [SYS/PERM] for another uid after the right password', async () => {
    await p.waitLog(/warning: not started as root: unprivileged mode/);
    const c = await connectTls(p.tlsPort);
    await c.line();
    assert.match(await login(c, 'ivan', 'ivan-pw'), /^\+OK/);
    assert.match(await c.cmd('STAT'), /^\+OK 1 /);
    await c.cmd('QUIT');
    const usertab = fs.readFileSync(p.files.usertab, 'utf8');
    fs.writeFileSync(p.files.usertab, usertab.replace(/^judy\t\d+:/m, `judy\t${MAILUSER.uid + 1}:`));
    const mark = p.log.length;
    p.proc.kill('SIGHUP');
    await p.waitLog(/reloaded tables/, mark);
    const d = await connectTls(p.tlsPort);
    await d.line();
    assert.match(await login(d, 'judy', 'wrong'), /^-ERR \[AUTH\]/);
    assert.match(await login(d, 'judy', 'judy-pw'), /^-ERR \[SYS\/PERM\]/);
  });
});
