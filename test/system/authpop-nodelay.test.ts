/**
 * The fetch path's latency: no answer waits for an ACK. With Nagle's
 * algorithm on the client socket, an answer that leaves in two writes
 * (a status line, then the message) had its second part held until the
 * client's delayed ACK: 17 ms per serial RETR, 58 instead of 1,000
 * messages/s. The option is read from authpop's real socket (a copy of the
 * descriptor through pidfd_getfd, as root), on both listeners and after STLS.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { connectPlain, connectTls, login, stls } from '../lib/pop3tls';
import { PopdFixture } from '../lib/popd';
import { inodesTo, tree } from '../lib/proc';
import { BIN, isRoot, ROOT } from '../lib/util';

const havePython = spawnSync('python3', ['-c', 'import os; os.pidfd_open'], { stdio: 'ignore' }).status === 0;

describe('TCP_NODELAY on every client socket', { skip: (!isRoot && "needs root: reads another process's socket") || (!havePython && 'needs python3 with pidfd_open') }, () => {
  let p: PopdFixture;
  before(async () => {
    p = await PopdFixture.start({ accounts: [{ user: 'alice', pass: 'pw-a', messages: ['Subject: s\n\n' + 'x'.repeat(50_000) + '\n'] }] });
  });
  after(async () => {
    if (p) await p.stop();
  });

  /** TCP_NODELAY of the authpop socket that serves the client on local port `port`. */
  function noDelay(port: number): string {
    const inodes = inodesTo(port);
    const holder = tree(p.proc.pid!).find((x) => x.cmdline.includes(BIN.authpop) && inodes.some((i) => x.fds.includes(`socket:[${i}]`)));
    assert.ok(holder, 'an authpop holds the connection');
    const inode = inodes.find((i) => holder.fds.includes(`socket:[${i}]`))!;
    const r = spawnSync('python3', [path.join(ROOT, 'test', 'lib', 'sockopt.py'), String(holder.pid), inode], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  }

  test('implicit TLS: set before the greeting, kept through login and RETR', async () => {
    const c = await connectTls(p.tlsPort);
    await c.line();
    const port = (c.io as net.Socket).localPort!;
    assert.equal(noDelay(port), '1');
    assert.match(await login(c, 'alice', 'pw-a'), /^\+OK/);
    assert.match(await c.cmd('RETR 1'), /^\+OK/);
    await c.multi();
    assert.equal(noDelay(port), '1');
    await c.cmd('QUIT');
  });

  test('plain port: set before STLS and still after it', async () => {
    const c = await connectPlain(p.stlsPort);
    await c.line();
    const port = (c.io as net.Socket).localPort!;
    assert.equal(noDelay(port), '1');
    const { tls } = await stls(c);
    assert.ok(tls);
    assert.match(await login(tls, 'alice', 'pw-a'), /^\+OK/);
    assert.equal(noDelay(port), '1');
    await tls.cmd('QUIT');
  });
});
