/** popd as a whole: the process model as root (from /proc), faults, signals, configuration errors. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { freePort, waitFor } from './lib/mailhost';
import { connectTls, login } from './lib/pop3tls';
import { ensurePop3dUser, makeCert, PopdFixture } from './lib/popd';
import { BIN, isRoot, MAILUSER, ROOT, run, tmpdir } from './lib/util';
import { exists, listeningInodes, proc, tree } from './lib/proc';

const msg = (i: number, body = `body ${i}\n`): string => `From: a@example.org\nSubject: ${i}\n\n${body}`;

/** pid of a child process named by a log line such as "session for alice: wrkrpop[123]". */
async function pidFromLog(p: PopdFixture, re: RegExp, after: number): Promise<number> {
  const line = await p.waitLog(re, after);
  return Number(re.exec(line)![1]);
}

describe('process model as root', { skip: !isRoot && 'needs root: chroot and privilege drops' }, () => {
  let p: PopdFixture;
  before(async () => {
    p = await PopdFixture.start({ accounts: [{ user: 'alice', pass: 'pw-a', messages: [msg(1)] }], mode: 'root' });
  });
  after(async () => {
    if (p) assert.equal((await p.stop()).code, 0);
  });

  test('popd alone is root and holds the listeners; authpop is _pop3d in /var/empty without key or tables; the worker is the mail user in the maildir', async () => {
    const c = await connectTls(p.tlsPort);
    await c.line();
    const mark = p.log.length;
    assert.match(await login(c, 'alice', 'pw-a'), /^\+OK/);
    const workerPid = await pidFromLog(p, /session for alice: wrkrpop\[(\d+)\]/, mark);
    await waitFor('the spare worker', () => tree(p.proc.pid!).length >= 4);
    const procs = tree(p.proc.pid!);
    const popd = procs.find((x) => x.pid === p.proc.pid)!;
    const authpop = procs.filter((x) => x.cmdline.includes(BIN.authpop));
    const worker = procs.find((x) => x.pid === workerPid)!;
    assert.equal(authpop.length, 1);
    assert.ok(worker, 'the session worker is a child of popd');

    // Root: popd, and at most one idle spare wrkrpop that has been told nothing yet (it has no user, no mail, no network socket).
    const root = procs.filter((x) => x.uids.some((u) => u === 0));
    assert.ok(root.includes(popd));
    const others = root.filter((x) => x !== popd);
    assert.ok(others.length <= 1, `root processes: ${root.map((x) => x.cmdline).join('; ')}`);
    for (const s of others) {
      assert.ok(s.cmdline.includes(BIN.wrkrpop) && s.ppid === popd.pid && s.pid !== workerPid, `unexpected root process ${s.cmdline}`);
      assert.equal(s.root, '/');
      // While Node starts it opens its modules (and NODE_EXTRA_CA_CERTS); once loaded it must hold no file.
      await waitFor(`the spare ${s.pid} to hold no file once loaded`, () => !proc(s.pid).fds.some((f) => f.startsWith('/') && f !== '/dev/null'), 5_000);
    }

    const pw = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('_pop3d:'))!.split(':');
    const [uid, gid] = [Number(pw[2]), Number(pw[3])];
    const a = authpop[0];
    assert.deepEqual(a.uids, [uid, uid, uid, uid]);
    assert.deepEqual(a.gids, [gid, gid, gid, gid]);
    assert.deepEqual(a.groups, [gid]);
    assert.equal(a.root, '/var/empty');
    for (const f of Object.values(p.files)) assert.ok(!a.fds.includes(f), `authpop holds ${f} open`);
    assert.ok(!a.fds.some((f) => f.startsWith('/') && f !== '/dev/null'), `authpop files: ${a.fds.join(' ')}`);

    assert.deepEqual(worker.uids, Array(4).fill(MAILUSER.uid));
    assert.deepEqual(worker.gids, Array(4).fill(MAILUSER.gid));
    assert.equal(worker.root, p.maildir('alice'));

    const listeners = listeningInodes([p.tlsPort, p.stlsPort]);
    assert.equal(listeners.length, 2);
    for (const x of procs) {
      const held = listeners.filter((i) => x.fds.includes(`socket:[${i}]`));
      assert.equal(held.length, x === popd ? 2 : 0, `${x.cmdline} holds ${held.length} listeners`);
    }
    await c.cmd('QUIT');
  });
});

describe('faults and signals', () => {
  let p: PopdFixture;
  const big = msg(1, 'x'.repeat(200) + '\n') + ('y'.repeat(998) + '\n').repeat(8000);
  // Far more than the loopback's socket buffers can hold.
  const huge = msg(1) + ('z'.repeat(998) + '\n').repeat(48_000);
  before(async () => {
    p = await PopdFixture.start({
      accounts: [
        { user: 'erin', pass: 'pw-e', messages: [big, msg(2)] },
        { user: 'frank', pass: 'pw-f', messages: [msg(3)] },
        { user: 'gail', pass: 'pw-g', messages: [huge] },
      ],
    });
  });
  after(async () => {
    if (p.proc.exitCode === null) await p.stop();
  });

  const files = (user: string): string[] => ['new', 'cur'].flatMap((d) => fs.readdirSync(path.join(p.maildir(user), d)));

  test('kill -9 of a worker in the middle of RETR closes that client and deletes nothing', async () => {
    const c = await connectTls(p.tlsPort);
    await c.line();
    const mark = p.log.length;
    assert.match(await login(c, 'erin', 'pw-e'), /^\+OK/);
    const pid = await pidFromLog(p, /session for erin: wrkrpop\[(\d+)\]/, mark);
    assert.match(await c.cmd('DELE 2'), /^\+OK/);
    c.send('RETR 1');
    assert.match(await c.line(), /^\+OK/);
    process.kill(pid, 'SIGKILL');
    const rest = await c.rest();
    assert.ok(rest.length < Buffer.byteLength(big) * 1.01 + 10, 'the client is closed');
    assert.equal(files('erin').length, 2);
    await waitFor('the worker to be gone', () => !exists(pid));
    let answer = '';
    for (let i = 0; i < 50 && !answer.startsWith('+OK'); i++) {
      const d = await connectTls(p.tlsPort);
      await d.line();
      answer = await login(d, 'erin', 'pw-e');
      if (answer.startsWith('+OK')) {
        assert.match(await d.cmd('STAT'), /^\+OK 2 /);
        await d.cmd('QUIT');
      } else await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(answer, /^\+OK/);
  });

  test('a client that does not read: the relay holds back the worker instead of buffering the message', async () => {
    const c = await connectTls(p.tlsPort);
    await c.line();
    assert.match(await login(c, 'gail', 'pw-g'), /^\+OK/);
    const authpop = tree(p.proc.pid!).find((x) => x.cmdline.includes(BIN.authpop))!;
    const rss = (): number => Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${authpop.pid}/status`, 'utf8'))![1]) * 1024;
    const before = rss();
    c.send('RETR 1');
    await new Promise((r) => setTimeout(r, 1500));
    const grown = rss() - before;
    const size = Buffer.byteLength(huge.replace(/\n/g, '\r\n'));
    assert.ok(grown < size / 3, `authpop grew by ${grown} bytes for a ${size}-byte message`);
    assert.match(await c.line(), /^\+OK/);
    assert.equal((await c.multi()).length, size);
    assert.match(await c.cmd('QUIT'), /^\+OK/);
  });

  test('kill -9 of authpop drops its sessions; popd starts a new one and the next login works', async () => {
    const c = await connectTls(p.tlsPort);
    await c.line();
    assert.match(await login(c, 'frank', 'pw-f'), /^\+OK/);
    const authpop = tree(p.proc.pid!).find((x) => x.cmdline.includes(BIN.authpop))!;
    process.kill(authpop.pid, 'SIGKILL');
    await c.rest();
    await p.waitLog(new RegExp(`authpop\\[${authpop.pid}\\] exited with SIGKILL`));
    const d = await connectTls(p.tlsPort);
    assert.match(await d.line(), /^\+OK/);
    // frank's worker saw its socket close and exited, so frank is not [IN-USE].
    let answer = '';
    for (let i = 0; i < 50 && !answer.startsWith('+OK'); i++) {
      answer = await login(d, 'frank', 'pw-f');
      if (!answer.startsWith('+OK')) await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(answer, /^\+OK 1 message|^\+OK/);
    await d.cmd('QUIT');
  });

  test('SIGHUP with a broken table keeps the old tables; a good one is taken', async () => {
    const good = fs.readFileSync(p.files.authtab, 'utf8');
    fs.writeFileSync(p.files.authtab, good + 'broken-line-without-hash\n');
    const mark = p.log.length;
    p.proc.kill('SIGHUP');
    await p.waitLog(/reload failed/, mark);
    const brokenLine = good.split('\n').length;
    assert.ok(p.log.some((l) => l.includes(`${p.files.authtab}:${brokenLine}:`)), 'file:line in the log');
    const c = await connectTls(p.tlsPort);
    await c.line();
    assert.match(await login(c, 'erin', 'pw-e'), /^\+OK/);
    await c.cmd('QUIT');
    await c.rest();
    fs.writeFileSync(p.files.authtab, good.replace(/^frank\t.*$/m, `frank\t${bcrypt.hashSync('new-pw', 4)}`));
    const mark2 = p.log.length;
    p.proc.kill('SIGHUP');
    await p.waitLog(/reloaded tables/, mark2);
    const d = await connectTls(p.tlsPort);
    await d.line();
    assert.match(await login(d, 'frank', 'new-pw'), /^\+OK/);
    await d.cmd('QUIT');
  });

  test('SIGHUP takes a renewed certificate for new connections; a broken one keeps the old', async () => {
    const fingerprint = async (): Promise<string> => {
      const c = await connectTls(p.tlsPort);
      const f = (c.io as tls.TLSSocket).getPeerCertificate().fingerprint256;
      c.io.destroy();
      return f;
    };
    const old = await fingerprint();
    const renewed = makeCert(fs.mkdtempSync(path.join(p.dir, 'renew-')));
    fs.copyFileSync(renewed.cert, p.files.cert);
    fs.copyFileSync(renewed.key, p.files.key);
    const want = new crypto.X509Certificate(fs.readFileSync(renewed.cert)).fingerprint256;
    assert.notEqual(want, old);
    let mark = p.log.length;
    p.proc.kill('SIGHUP');
    await p.waitLog(/certificate reloaded/, mark);
    assert.equal(await fingerprint(), want);
    fs.writeFileSync(p.files.key, 'not a key\n');
    mark = p.log.length;
    p.proc.kill('SIGHUP');
    await p.waitLog(/keeping the certificate loaded before/, mark);
    assert.equal(await fingerprint(), want);
    fs.copyFileSync(renewed.key, p.files.key);
  });

  test('SIGTERM: an open session may finish, then popd exits 0 with no process left behind', async () => {
    const c = await connectTls(p.tlsPort);
    await c.line();
    assert.match(await login(c, 'erin', 'pw-e'), /^\+OK/);
    const children = tree(p.proc.pid!).filter((x) => x.pid !== p.proc.pid);
    assert.ok(children.length >= 2);
    const stopped = p.stop();
    await p.waitLog(/shutting down/);
    assert.match(await c.cmd('STAT'), /^\+OK 2 /, 'the session goes on');
    assert.match(await c.cmd('QUIT'), /^\+OK/);
    assert.equal((await stopped).code, 0);
    await waitFor('every child to be gone', () => children.every((x) => !exists(x.pid)), 5_000);
  });
});

test('an authpop that asks for a second password check on one connection is killed, and popd starts a new one', async () => {
  // popd's installed layout, with an impostor in authpop's place: popd finds its helpers beside itself.
  const root = tmpdir('popd-impostor-');
  fs.mkdirSync(path.join(root, 'packages', 'authpop', 'dist'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'packages', 'popd'), path.join(root, 'packages', 'popd'), { recursive: true });
  fs.symlinkSync(path.join(ROOT, 'packages', 'wrkrpop'), path.join(root, 'packages', 'wrkrpop'));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'));
  fs.writeFileSync(
    path.join(root, 'packages', 'authpop', 'dist', 'main.js'),
    `process.on('message', (m) => {
      if (m.t === 'config') process.send({ t: 'ready' });
      if (m.t === 'conn') for (const pass of ['one', 'two']) process.send({ t: 'auth', id: m.id, user: 'alice', pass });
    });`,
  );
  const files = { authtab: path.join(root, 'authtab'), usertab: path.join(root, 'usertab'), ...makeCert(root) };
  fs.writeFileSync(files.authtab, `alice\t${bcrypt.hashSync('pw', 4)}\n`);
  fs.writeFileSync(files.usertab, `alice\t${MAILUSER.uid}:${MAILUSER.gid}:${path.join(root, 'mail')}\n`);
  if (isRoot) for (const f of Object.values(files)) fs.chownSync(f, MAILUSER.uid, MAILUSER.gid);
  const port = await freePort();
  const popd = spawn(process.execPath, [path.join(root, 'packages', 'popd', 'dist', 'main.js'), '-d', '-a', files.authtab, '-u', files.usertab, '-c', files.cert, '-k', files.key, '-l', `127.0.0.1:${port}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(isRoot ? { uid: MAILUSER.uid, gid: MAILUSER.gid } : {}),
  });
  let log = '';
  popd.stderr!.on('data', (b: Buffer) => (log += b.toString()));
  try {
    await waitFor('popd to listen', () => log.includes('listening on'));
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => undefined);
    await waitFor('popd to kill the impostor', () => /authpop asked for a second login on connection \S+; killing it/.test(log));
    await waitFor('popd to start another authpop', () => /authpop\[\d+\] exited with SIGKILL; restarting/.test(log));
    c.destroy();
  } finally {
    popd.kill('SIGKILL');
  }
});

describe('configuration errors: one line, exit 1', () => {
  let dir: string;
  let args: (over: Record<string, string>, extra?: string[]) => string[];
  before(() => {
    dir = tmpdir('popd-cfg-');
    const { cert, key } = makeCert(dir);
    const other = makeCert(fs.mkdtempSync(path.join(dir, 'o')));
    const h = bcrypt.hashSync('pw', 4);
    const w = (name: string, text: string): string => {
      fs.writeFileSync(path.join(dir, name), text);
      return path.join(dir, name);
    };
    w('authtab', `u1\t${h}\n`);
    w('usertab', `u1\t${MAILUSER.uid}:${MAILUSER.gid}:/var/mail/u1\n`);
    w('bad-authtab', `u1\t${h}\nu2 notahash-$2b$10$secretsecret\n`);
    w('usertab-2', `u1\t${MAILUSER.uid}:${MAILUSER.gid}:/var/mail/u1\nu2\t${MAILUSER.uid}:${MAILUSER.gid}:/var/mail/u2\n`);
    w('authtab-extra', `u1\t${h}\nu2\t${h}\n`);
    w('usertab-uid0', `u1\t0:0:/var/mail/u1\n`);
    w('usertab-rel', `u1\t${MAILUSER.uid}:${MAILUSER.gid}:mail/u1\n`);
    w('garbage.pem', 'not a certificate\n');
    fs.renameSync(other.key, path.join(dir, 'other-key.pem'));
    if (isRoot) for (const f of fs.readdirSync(dir)) fs.chownSync(path.join(dir, f), MAILUSER.uid, MAILUSER.gid);
    args = (over, extra = []) => {
      const o: Record<string, string> = { '-a': path.join(dir, 'authtab'), '-u': path.join(dir, 'usertab'), '-c': cert, '-k': key, '-l': '127.0.0.1:1', ...over };
      return [...Object.entries(o).flatMap(([k, v]) => (v === '' ? [] : [k, v])), ...extra];
    };
  });

  const cases: Array<[string, Record<string, string>, RegExp, string[]?]> = [
    ['missing authtab', { '-a': '/nonexistent/authtab' }, /^popd: \/nonexistent\/authtab: cannot read: no such file$/],
    ['malformed authtab line', { '-a': 'bad-authtab', '-u': 'usertab-2' }, /bad-authtab:2: user u2: not a bcrypt hash/],
    ['user in authtab without usertab line', { '-a': 'authtab-extra' }, /user u2 is in .*authtab-extra but has no line here/],
    ['uid 0', { '-u': 'usertab-uid0' }, /usertab-uid0:1: user u1: uid and gid must not be 0/],
    ['relative maildir', { '-u': 'usertab-rel' }, /usertab-rel:1: user u1: maildir must be an absolute path/],
    ['certificate that does not load', { '-c': 'garbage.pem' }, /garbage\.pem.*cannot load certificate and key/],
    ['key that does not match', { '-k': 'other-key.pem' }, /other-key\.pem: key does not match certificate/],
    ['no listener', { '-l': '' }, /at least one -l or -s/],
    ['bad address', { '-l': 'localhost:995' }, /expected IPv4 address or \[IPv6 address\]/],
    ['bad number', {}, /maxconn|-m/, ['-m', '0']],
  ];
  for (const [name, over, re, extra] of cases) {
    test(name, async () => {
      const full = Object.fromEntries(Object.entries(over).map(([k, v]) => [k, v !== '' && !v.startsWith('/') && k !== '-l' ? path.join(dir, v) : v]));
      const r = await run(BIN.popd, args(full, extra));
      assert.equal(r.status, 1, r.stderr);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], re);
      assert.doesNotMatch(r.stderr, /secret|\$2b\$04\$/, 'never a hash');
    });
  }

  test('missing unprivileged user', { skip: !isRoot && 'the user matters only as root' }, async () => {
    ensurePop3dUser();
    const r = await run(BIN.popd, args({}, ['-U', 'no-such-user-xyz', '-n']), { asRoot: true });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, 'popd: -U no-such-user-xyz: no such user\n');
  });

  test('a chroot directory authpop could write to', { skip: !isRoot && 'the chroot matters only as root' }, async () => {
    ensurePop3dUser();
    const prison = tmpdir('popd-chroot-');
    const r = await run(BIN.popd, args({}, ['-C', prison, '-n']), { asRoot: true });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `popd: -C ${prison}: must be owned by root and writable by nobody else\n`);
  });

  test('address already in use, with -d and detached', async () => {
    const port = await freePort();
    const holder = net.createServer().listen(port, '127.0.0.1');
    await new Promise((r) => holder.once('listening', r));
    try {
      for (const extra of [['-d'], []]) {
        const r = await run(BIN.popd, args({ '-l': `127.0.0.1:${port}` }, extra));
        assert.equal(r.status, 1, r.stderr);
        assert.equal(r.stderr, `popd: cannot listen on 127.0.0.1:${port}: address already in use\n`);
      }
    } finally {
      holder.close();
    }
  });

  test('without -d popd detaches: the command exits 0 once it serves, and SIGTERM ends the daemon', async () => {
    const port = await freePort();
    const r = await run(BIN.popd, args({ '-l': `127.0.0.1:${port}` }));
    assert.equal(r.status, 0, r.stderr);
    const c = await connectTls(port);
    assert.match(await c.line(), /^\+OK/);
    c.io.destroy();
    const authtab = path.join(dir, 'authtab');
    const daemon = fs
      .readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number)
      .find((pid) => {
        try {
          const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
          return cmd.includes(BIN.popd) && cmd.includes(authtab) && cmd.includes(`127.0.0.1:${port}`);
        } catch {
          return false;
        }
      });
    assert.ok(daemon, 'the detached popd is running');
    const children = tree(daemon).filter((x) => x.pid !== daemon);
    process.kill(daemon, 'SIGTERM');
    await waitFor('the daemon and its children to exit', () => !exists(daemon) && children.every((x) => !exists(x.pid)), 10_000);
  });

  test('an [IPv6] listener serves', { skip: !fs.existsSync('/proc/net/if_inet6') && 'no IPv6' }, async () => {
    const port = await freePort();
    const bad = await run(BIN.popd, args({ '-l': `::1:${port}` }, ['-n']));
    assert.equal(bad.status, 1);
    const popd = spawn(process.execPath, [BIN.popd, ...args({ '-l': `[::1]:${port}` }, ['-d'])], { stdio: ['ignore', 'ignore', 'pipe'], ...(isRoot ? { uid: MAILUSER.uid, gid: MAILUSER.gid } : {}) });
    let err = '';
    popd.stderr!.on('data', (b: Buffer) => (err += b));
    try {
      await waitFor('popd on [::1]', () => {
        if (popd.exitCode !== null) throw new Error(err);
        return err.includes(`listening on [::1]:${port}`);
      });
      const c = await connectTls(port, { host: '::1' });
      assert.match(await c.line(), /^\+OK/);
      c.io.destroy();
    } finally {
      const exited = new Promise((r) => popd.once('exit', r));
      popd.kill('SIGTERM');
      await exited;
    }
  });

  test('-n: checks and exits 0 or 1', async () => {
    const ok = await run(BIN.popd, args({}, ['-n']));
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout.toString(), 'configuration OK\n');
    const bad = await run(BIN.popd, args({ '-u': path.join(dir, 'usertab-uid0') }, ['-n']));
    assert.equal(bad.status, 1);
  });
});

describe('SIGTERM with a session that does not end', () => {
  test('popd ends it after the grace period, exits 0, and leaves no process behind', { timeout: 60_000 }, async () => {
    const p = await PopdFixture.start({ accounts: [{ user: 'kim', pass: 'pw-k', messages: [msg(1)] }] });
    const c = await connectTls(p.tlsPort);
    await c.line();
    assert.match(await login(c, 'kim', 'pw-k'), /^\+OK/);
    const waiting = await connectTls(p.tlsPort);
    assert.match(await waiting.line(), /^\+OK/);
    const children = tree(p.proc.pid!).filter((x) => x.pid !== p.proc.pid);
    // Unbounded, this would wait for kim's 10-minute idle timeout and the test would time out.
    const { code } = await p.stop();
    assert.equal(code, 0);
    assert.match((await waiting.rest()).toString(), /^-ERR \[SYS\/TEMP\] server shutting down/, 'a client that had not logged in is told');
    await c.rest();
    await waitFor('every child to be gone', () => children.every((x) => !exists(x.pid)), 5_000);
    const files = ['new', 'cur'].flatMap((d) => fs.readdirSync(path.join(p.maildir('kim'), d)));
    assert.equal(files.length, 1);
  });
});
