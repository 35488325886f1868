/** popd as a whole: the process model as root (from /proc), faults, signals, configuration errors. */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { socketpair } from '@popd/channel';
import { freePort, waitFor } from '../lib/mailhost';
import { connectTls, login } from '../lib/pop3tls';
import { ensurePop3dUser, makeCert, PopdFixture } from '../lib/popd';
import { BIN, isRoot, MAILUSER, ROOT, run, tmpdir } from '../lib/util';
import { exists, inodesTo, listeningInodes, proc, tree } from '../lib/proc';

const msg = (i: number, body = `body ${i}\n`): string => `From: a@example.org\nSubject: ${i}\n\n${body}`;

/** pid of a child process named by a log line such as "session for alice: wrkrpop[123]". */
async function pidFromLog(p: PopdFixture, re: RegExp, after: number): Promise<number> {
  const line = await p.waitLog(re, after);
  return Number(re.exec(line)![1]);
}

/** A second mail uid (no passwd entry needed for setuid). */
const OTHER = { uid: 65533, gid: 65533 };

for (const isolation of ['uid', 'session'] as const) {
  describe(`process model as root, -W ${isolation}`, { skip: !isRoot && 'needs root: chroot and privilege drops' }, () => {
    let p: PopdFixture;
    const accounts = [
      { user: 'alice', pass: 'pw-a', messages: [msg(1)] },
      { user: 'bob', pass: 'pw-b', messages: [msg(2), msg(3)] },
      { user: 'dave', pass: 'pw-d', messages: [msg(4)], owner: OTHER },
    ];
    before(async () => {
      p = await PopdFixture.start({ accounts, mode: 'root', args: ['-A', '2', '-W', isolation] });
    });
    after(async () => {
      if (p) assert.equal((await p.stop()).code, 0);
    });
    // A test that fails midway leaves its sessions open: they must not make the next ones [IN-USE].
    const clients = new Set<Awaited<ReturnType<typeof connectTls>>>();
    afterEach(() => {
      for (const c of clients) c.io.destroy();
      clients.clear();
    });

    /** Logs each user in on a connection of its own, at once; the sessions stay open. */
    async function sessions(users: string[]): Promise<Array<{ user: string; c: Awaited<ReturnType<typeof connectTls>>; pid: number }>> {
      const mark = p.log.length;
      return Promise.all(
        users.map(async (user) => {
          const c = await connectTls(p.tlsPort);
          clients.add(c);
          await c.line();
          assert.match(await login(c, user, accounts.find((a) => a.user === user)!.pass), /^\+OK/);
          return { user, c, pid: await pidFromLog(p, new RegExp(`session for ${user}: wrkrpop\\[(\\d+)\\]`), mark) };
        }),
      );
    }

    test('popd alone is root and holds the listeners; the authpops are _pop3d in /var/empty without key or tables; workers are their users in their roots', async () => {
      const open = await sessions(['alice', 'bob', 'dave']);
      const [alice, bob, dave] = open;
      const procs = tree(p.proc.pid!);
      const popd = procs.find((x) => x.pid === p.proc.pid)!;
      const authpops = procs.filter((x) => x.cmdline.includes(BIN.authpop));
      assert.equal(authpops.length, 2);

      const pw = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('_pop3d:'))!.split(':');
      const [uid, gid] = [Number(pw[2]), Number(pw[3])];
      for (const a of authpops) {
        assert.deepEqual(a.uids, [uid, uid, uid, uid]);
        assert.deepEqual(a.gids, [gid, gid, gid, gid]);
        assert.deepEqual(a.groups, [gid]);
        assert.equal(a.root, '/var/empty');
        for (const f of Object.values(p.files)) assert.ok(!a.fds.includes(f), `authpop holds ${f} open`);
        // libuv keeps one descriptor in reserve for accept's EMFILE case: /dev/null, or in a chroot without it the (empty) root.
        assert.ok(!a.fds.some((f) => f.startsWith('/') && f !== '/dev/null' && f !== a.root), `authpop files: ${a.fds.join(' ')}`);
      }

      const worker = (pid: number): ReturnType<typeof proc> => procs.find((x) => x.pid === pid)!;
      for (const s of open) assert.ok(worker(s.pid), `${s.user}'s worker is a child of popd`);
      assert.notEqual(alice.pid, dave.pid, 'no worker serves two uids');
      if (isolation === 'uid') {
        assert.equal(alice.pid, bob.pid, 'one worker serves both users of one uid');
        assert.equal(worker(alice.pid).root, path.dirname(p.maildir('alice')), 'the root holds both maildirs');
        assert.equal(worker(dave.pid).root, p.maildir('dave'));
      } else {
        assert.equal(new Set(open.map((s) => s.pid)).size, 3, 'a worker per session');
        for (const s of open) assert.equal(worker(s.pid).root, p.maildir(s.user));
      }
      for (const [s, id] of [[alice, MAILUSER], [dave, OTHER]] as const) {
        assert.deepEqual(worker(s.pid).uids, Array(4).fill(id.uid));
        assert.deepEqual(worker(s.pid).gids, Array(4).fill(id.gid));
        assert.deepEqual(worker(s.pid).groups, [id.gid]);
      }

      // Root: popd, and the idle spares that have been told nothing yet (no user, no mail, no network socket).
      const root = procs.filter((x) => x.uids.some((u) => u === 0));
      assert.ok(root.includes(popd));
      for (const s of root.filter((x) => x !== popd)) {
        assert.ok(s.cmdline.includes(BIN.wrkrpop) && s.ppid === popd.pid && !open.some((o) => o.pid === s.pid), `unexpected root process ${s.cmdline}`);
        assert.equal(s.root, '/');
        // While Node starts it opens its modules; once loaded it must hold no file.
        // Bounded only against a hang: a spare loads at nice 19, and beside busy processes that may take seconds.
        await waitFor(`the spare ${s.pid} to hold no file once loaded`, () => !proc(s.pid).fds.some((f) => f.startsWith('/') && f !== '/dev/null'), 60_000);
      }

      const listeners = listeningInodes([p.tlsPort, p.stlsPort]);
      assert.equal(listeners.length, 2);
      for (const x of procs) {
        const held = listeners.filter((i) => x.fds.includes(`socket:[${i}]`));
        assert.equal(held.length, x === popd ? 2 : 0, `${x.cmdline} holds ${held.length} listeners`);
      }

      // Each session sees its own mailbox only; no command takes a path.
      assert.match(await alice.c.cmd('STAT'), /^\+OK 1 /);
      assert.match(await bob.c.cmd('STAT'), /^\+OK 2 /);
      for (const cmd of ['RETR ../bob/cur', 'LIST /etc/passwd', 'TOP ../../ 1', 'UIDL ..', 'DELE ../bob']) assert.match(await alice.c.cmd(cmd), /^-ERR/, cmd);
      for (const s of open) assert.match(await s.c.cmd('QUIT'), /^\+OK/);
    });

    test('a maildir that is a link to another user\'s is refused, and that mail stays untouched', async () => {
      const link = path.join(path.dirname(p.maildir('alice')), 'mallory');
      fs.symlinkSync(p.maildir('bob'), link);
      fs.lchownSync(link, MAILUSER.uid, MAILUSER.gid);
      fs.appendFileSync(p.files.usertab, `mallory\t${MAILUSER.uid}:${MAILUSER.gid}:${link}\n`);
      fs.appendFileSync(p.files.authtab, `mallory\t${bcrypt.hashSync('pw-m', 4)}\n`);
      const mark = p.log.length;
      p.proc.kill('SIGHUP');
      await p.waitLog(/reloaded tables/, mark);
      const before = fs.readdirSync(path.join(p.maildir('bob'), 'cur')).concat(fs.readdirSync(path.join(p.maildir('bob'), 'new')));
      const c = await connectTls(p.tlsPort);
      await c.line();
      assert.match(await login(c, 'mallory', 'pw-m'), /^-ERR \[SYS\/TEMP\] mailbox unavailable/);
      await p.waitLog(/is a symbolic link/, mark);
      const after = fs.readdirSync(path.join(p.maildir('bob'), 'cur')).concat(fs.readdirSync(path.join(p.maildir('bob'), 'new')));
      assert.deepEqual(after, before);
    });

    test('kill -9 of a worker ends only its own sessions and deletes nothing', async () => {
      const open = await sessions(['alice', 'bob', 'dave']);
      const [alice, bob, dave] = open;
      for (const s of [alice, bob]) assert.match(await s.c.cmd('DELE 1'), /^\+OK/);
      process.kill(alice.pid, 'SIGKILL');
      await alice.c.rest();
      if (isolation === 'uid') await bob.c.rest();
      else assert.match(await bob.c.cmd('STAT'), /^\+OK 1 /, "bob's own worker goes on");
      assert.match(await dave.c.cmd('STAT'), /^\+OK 1 /, 'another worker goes on');
      await waitFor('the worker to be gone', () => !exists(alice.pid));
      const count = (u: string): number => ['new', 'cur'].reduce((n, d) => n + fs.readdirSync(path.join(p.maildir(u), d)).length, 0);
      assert.equal(count('alice'), 1, 'nothing deleted');
      assert.equal(count('bob'), 2, 'nothing deleted');
      for (const s of [dave, ...(isolation === 'uid' ? [] : [bob])]) assert.match(await s.c.cmd('RSET'), /^\+OK/);
      for (const s of [dave, ...(isolation === 'uid' ? [] : [bob])]) assert.match(await s.c.cmd('QUIT'), /^\+OK/);
      const again = await sessions(['alice']);
      assert.match(await again[0].c.cmd('STAT'), /^\+OK 1 /);
      await again[0].c.cmd('QUIT');
    });

    test('SIGHUP that moves a maildir out of a worker\'s root retires that worker after its sessions; new sessions get a new one', { skip: isolation === 'session' && 'per-uid workers only' }, async () => {
      const [alice] = await sessions(['alice']);
      const moved = path.join(p.dir, 'elsewhere', 'erin');
      fs.mkdirSync(moved, { recursive: true, mode: 0o700 });
      for (const d of [path.dirname(moved), moved]) fs.chownSync(d, MAILUSER.uid, MAILUSER.gid);
      fs.appendFileSync(p.files.usertab, `erin\t${MAILUSER.uid}:${MAILUSER.gid}:${moved}\n`);
      fs.appendFileSync(p.files.authtab, `erin\t${bcrypt.hashSync('pw-e', 4)}\n`);
      const mark = p.log.length;
      p.proc.kill('SIGHUP');
      await p.waitLog(/reloaded tables/, mark);
      const [bob] = await sessions(['bob']);
      assert.notEqual(bob.pid, alice.pid, 'the retired worker takes no new session');
      assert.equal(proc(bob.pid).root, p.dir, 'the new root holds every maildir of the uid');
      assert.match(await alice.c.cmd('STAT'), /^\+OK/, "the retired worker's session goes on");
      assert.match(await alice.c.cmd('QUIT'), /^\+OK/);
      await waitFor('the retired worker to exit after its last session', () => !exists(alice.pid));
      await bob.c.cmd('QUIT');
    });

    test('200 simultaneous logins: none fails', { skip: isolation === 'session' && 'npm run bench -- compare measures per-session bursts' }, async () => {
      const q = await PopdFixture.start({
        accounts: Array.from({ length: 200 }, (_, i) => ({ user: `u${i}`, pass: `pw-${i}` })),
        mode: 'root',
        args: ['-W', isolation, '-M', '1000'],
      });
      try {
        const answers = await Promise.all(
          Array.from({ length: 200 }, async (_, i) => {
            const c = await connectTls(q.tlsPort);
            await c.line();
            const a = await login(c, `u${i}`, `pw-${i}`);
            if (a.startsWith('+OK')) await c.cmd('QUIT');
            c.io.destroy();
            return a;
          }),
        );
        assert.deepEqual(answers.filter((a) => !a.startsWith('+OK')), []);
      } finally {
        await q.stop();
      }
    });
  });
}

describe('what children inherit', { skip: !isRoot && 'needs root: reads other users\' /proc entries' }, () => {
  test('children get PATH as their environment and no descriptor popd inherited; popd closes the ones it can tell apart', async () => {
    const q = await PopdFixture.start({ accounts: [{ user: 'alice', pass: 'pw-a' }], mode: 'root' });
    await q.stop();
    // The same configuration again, now started the way a careless wrapper would: root's environment
    // with a secret in it, and authtab open on a low and a high descriptor without close-on-exec.
    const authtabFd = fs.openSync(q.files.authtab, 'r');
    const port = await freePort();
    const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'ignore', 'pipe', authtabFd, ...Array<'ignore'>(36).fill('ignore'), authtabFd];
    const popd = spawn(process.execPath, [BIN.popd, '-d', '-v', '-a', q.files.authtab, '-u', q.files.usertab, '-c', q.files.cert, '-k', q.files.key, '-l', `127.0.0.1:${port}`], {
      stdio,
      env: { ...process.env, POPD_TEST_SECRET: 'hunter2' },
    });
    fs.closeSync(authtabFd);
    let log = '';
    popd.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    try {
      await waitFor('popd to listen', () => log.includes('listening on'));
      const c = await connectTls(port);
      await c.line();
      assert.match(await login(c, 'alice', 'pw-a'), /^\+OK/);
      const authtab = fs.realpathSync(q.files.authtab);
      const procs = tree(popd.pid!);
      const children = procs.filter((x) => x.pid !== popd.pid);
      assert.ok(children.some((x) => x.cmdline.includes(BIN.authpop)) && children.some((x) => x.cmdline.includes(BIN.wrkrpop)));
      for (const x of children) {
        assert.deepEqual(fs.readFileSync(`/proc/${x.pid}/environ`, 'utf8').split('\0').filter(Boolean), ['PATH=/usr/bin:/bin'], `${x.cmdline}'s environment`);
        assert.ok(!x.fds.includes(authtab), `${x.cmdline} holds authtab`);
        // Only stdio and the channel: nothing at 40, where popd got authtab.
        assert.ok(!fs.existsSync(`/proc/${x.pid}/fd/40`), `${x.cmdline} has descriptor 40`);
      }
      // popd itself closed both: the high one lacks close-on-exec; the low one Node marked close-on-exec
      // at its start, but it is a file, and Node holds none of its own then.
      assert.ok(!fs.existsSync(`/proc/${popd.pid}/fd/40`), 'popd closed the descriptor it inherited at 40');
      assert.ok(!proc(popd.pid!).fds.includes(authtab), 'popd closed the descriptor it inherited at 3');
      await c.cmd('QUIT');
    } finally {
      popd.kill('SIGTERM');
      await new Promise((r) => popd.once('exit', r));
    }
  });
});

test('authpop and wrkrpop close a file or a directory leaked to them as they start, however low, and keep their channel', async () => {
  // A thread of popd's starting V8 opens /proc/self/maps without close-on-exec; a child forked at
  // that moment gets it. Here a file and a directory stand for it, at 5 and 6 (close-on-exec in the
  // child, as Node marks 0 to 15 so).
  for (const bin of [BIN.authpop, BIN.wrkrpop]) {
    const [ours, theirs] = socketpair('seqpacket');
    const file = fs.openSync(__filename, 'r');
    const dir = fs.openSync(__dirname, 'r');
    const child = spawn(process.execPath, [bin], { stdio: ['ignore', 'ignore', 'pipe', theirs, 'ignore', file, dir], env: { PATH: '/usr/bin:/bin' } });
    for (const fd of [theirs, file, dir]) fs.closeSync(fd);
    try {
      // Empty once the child is gone (its /proc entry with it): the wait then ends, and the next line fails.
      const fds = (): string[] => {
        try {
          return proc(child.pid!).fds;
        } catch {
          return [];
        }
      };
      await waitFor(`${path.basename(path.dirname(path.dirname(bin)))} to close descriptors 5 and 6`, () => !exists(child.pid!) || !fds().some((f) => f === fs.realpathSync(__filename) || f === fs.realpathSync(__dirname)), 30_000);
      assert.ok(exists(child.pid!), 'still running');
      assert.ok(fs.existsSync(`/proc/${child.pid}/fd/3`), 'its channel');
    } finally {
      child.kill('SIGKILL');
      fs.closeSync(ours);
      await new Promise((r) => child.once('exit', r));
    }
  }
});

describe('spares', { skip: !isRoot && 'needs root: only root may set a nice value back' }, () => {
  test('a spare starts at nice 19 and is set back to 0 when a session takes it', async () => {
    const q = await PopdFixture.start({ accounts: [{ user: 'alice', pass: 'pw-a' }], mode: 'root' });
    try {
      /** Field 19 of /proc/PID/task/TID/stat: a nice value is a thread's; the value of the main thread, or of every thread. */
      const niceOf = (pid: number, tid: number): number => {
        const st = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1');
        return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[16]);
      };
      const nice = (pid: number): number => niceOf(pid, pid);
      const threadsNice = (pid: number): number[] => [...new Set(fs.readdirSync(`/proc/${pid}/task`).map((t) => niceOf(pid, Number(t))))];
      const workers = (): Array<{ pid: number; uid: number }> => tree(q.proc.pid!).filter((x) => x.cmdline.includes(BIN.wrkrpop)).map((x) => ({ pid: x.pid, uid: x.uids[0] }));
      await waitFor('a spare', () => workers().length > 0);
      for (const w of workers()) assert.equal(nice(w.pid), 19, `spare ${w.pid}`);
      const c = await connectTls(q.tlsPort);
      await c.line();
      assert.match(await login(c, 'alice', 'pw-a'), /^\+OK/);
      // The one serving alice runs as the mail user; the spare started in its place, still root, waits at 19.
      await waitFor('the next spare', () => workers().some((w) => w.uid === 0));
      for (const w of workers()) assert.equal(nice(w.pid), w.uid === 0 ? 19 : 0, `${w.uid === 0 ? 'spare' : 'serving worker'} ${w.pid}`);
      // Every thread of the serving worker (V8's compiler and GC helpers too), not only its main one.
      for (const w of workers().filter((x) => x.uid !== 0)) assert.deepEqual(threadsNice(w.pid), [0], `threads of ${w.pid}`);
      await c.cmd('QUIT');
    } finally {
      await q.stop();
    }
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
      // Two authpops: a reload reaches each, and the certificate test waits for both.
      args: ['-A', '2'],
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
    // The authpop holding this connection (popd runs two): the one with the socket whose remote port is the client's.
    const socket = inodesTo((c.io as net.Socket).localPort!).map((i) => `socket:[${i}]`);
    const authpop = tree(p.proc.pid!).find((x) => x.cmdline.includes(BIN.authpop) && x.fds.some((f) => socket.includes(f)))!;
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
    // The authpop holding this connection (popd runs two): the one with the socket whose remote port is the client's.
    const socket = inodesTo((c.io as net.Socket).localPort!).map((i) => `socket:[${i}]`);
    const authpop = tree(p.proc.pid!).find((x) => x.cmdline.includes(BIN.authpop) && x.fds.some((f) => socket.includes(f)))!;
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
    const mark = p.log.length;
    p.proc.kill('SIGHUP');
    await p.waitLog(/certificate reloaded/, mark);
    // Two connections held at once go to both authpops: one that was running reloads on SIGHUP; one that the
    // test before killed, and popd is still restarting, reads the files when it starts. Both must serve the new one.
    const both = async (): Promise<string[]> => {
      const cs = await Promise.all([connectTls(p.tlsPort), connectTls(p.tlsPort)]);
      const f = cs.map((c) => (c.io as tls.TLSSocket).getPeerCertificate().fingerprint256);
      for (const c of cs) c.io.destroy();
      return f;
    };
    await waitFor('new connections to every authpop to get the renewed certificate', async () => (await both()).every((f) => f === want));
    assert.equal(await fingerprint(), want);
    fs.writeFileSync(p.files.key, 'not a key\n');
    const mark2 = p.log.length;
    p.proc.kill('SIGHUP');
    await p.waitLog(/keeping the certificate loaded before/, mark2);
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

/**
 * popd's installed layout with an impostor in authpop's place (popd finds
 * its helpers beside itself): the impostor's first run does `hostile` on the
 * channel (descriptor 3), later runs are the real authpop. popd must kill
 * it, log why, start a real one, and serve.
 */
async function withImpostor(hostile: string, expect: RegExp): Promise<void> {
  const root = tmpdir('popd-impostor-');
  fs.mkdirSync(path.join(root, 'packages', 'authpop', 'dist'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'packages', 'popd'), path.join(root, 'packages', 'popd'), { recursive: true });
  for (const pkg of ['wrkrpop', 'shared', 'channel']) fs.symlinkSync(path.join(ROOT, 'packages', pkg), path.join(root, 'packages', pkg));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'));
  const marker = path.join(root, 'hostile-once');
  fs.writeFileSync(
    path.join(root, 'packages', 'authpop', 'dist', 'main.js'),
    `const fs = require('fs');
    if (fs.existsSync(${JSON.stringify(marker)})) require(${JSON.stringify(BIN.authpop)});
    else {
      fs.writeFileSync(${JSON.stringify(marker)}, '');
      const { Channel } = require('@popd/channel');
      const ch = new Channel(3);
      const send = (m) => ch.send(Buffer.from(JSON.stringify(m)));
      ch.on('message', (data, fd) => {
        const m = JSON.parse(data.toString());
        if (fd !== null) fs.closeSync(fd);
        if (m.t === 'config') { send({ t: 'ready', v: m.v }); ${hostile} }
      });
    }`,
  );
  if (isRoot) fs.chownSync(marker.replace(/hostile-once$/, ''), MAILUSER.uid, MAILUSER.gid);
  const files = { authtab: path.join(root, 'authtab'), usertab: path.join(root, 'usertab'), ...makeCert(root) };
  fs.writeFileSync(files.authtab, `alice\t${bcrypt.hashSync('pw', 4)}\n`);
  const mail = path.join(root, 'mail');
  fs.mkdirSync(mail, { mode: 0o700 });
  fs.writeFileSync(files.usertab, `alice\t${MAILUSER.uid}:${MAILUSER.gid}:${mail}\n`);
  if (isRoot) for (const f of [...Object.values(files), mail]) fs.chownSync(f, MAILUSER.uid, MAILUSER.gid);
  const port = await freePort();
  const popd = spawn(process.execPath, [path.join(root, 'packages', 'popd', 'dist', 'main.js'), '-d', '-A', '1', '-a', files.authtab, '-u', files.usertab, '-c', files.cert, '-k', files.key, '-l', `127.0.0.1:${port}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(isRoot ? { uid: MAILUSER.uid, gid: MAILUSER.gid } : {}),
  });
  let log = '';
  popd.stderr!.on('data', (b: Buffer) => (log += b.toString()));
  try {
    await waitFor('popd to listen', () => log.includes('listening on'));
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => undefined);
    await waitFor('popd to kill the impostor', () => expect.test(log));
    await waitFor('popd to start another authpop', () => /authpop\[\d+\] exited with SIGKILL; restarting/.test(log));
    c.destroy();
    // popd lives on and the real authpop serves.
    let answer = '';
    for (let i = 0; i < 50 && !answer.startsWith('+OK'); i++) {
      try {
        const d = await connectTls(port);
        await d.line();
        answer = await login(d, 'alice', 'pw');
        await d.cmd('QUIT');
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.match(answer, /^\+OK/, log);
    assert.equal(popd.exitCode, null, 'popd is still running');
  } finally {
    popd.kill('SIGKILL');
  }
}

describe('a hostile authpop ends only itself: popd kills it, starts a real one and serves on', () => {
  test('two password checks at once on one connection', () =>
    withImpostor("ch.on('message', (d) => { const c = JSON.parse(d.toString()); if (c.t === 'conn') for (const pass of ['one', 'two']) send({ t: 'auth', id: c.id, user: 'alice', pass }); });", /authpop\[\d+\] asked for a second login on connection \S+; killing it/));
  test('bytes that are not JSON', () => withImpostor("ch.send(Buffer.from('{not json'));", /authpop\[\d+\] sent a malformed message; killing it/));
  test("Node's IPC handle acknowledgement (it once crashed popd)", () => withImpostor("send({ cmd: 'NODE_HANDLE_ACK' });", /authpop\[\d+\] sent a malformed message; killing it/));
  test('a message longer than any (endless bytes)', () =>
    withImpostor('fs.writeSync(3, Buffer.alloc(70000, 0x41));', /authpop\[\d+\] sent a malformed datagram; killing it/));
  test('a descriptor sent to popd', () => withImpostor("ch.send(Buffer.from(JSON.stringify({ t: 'log', level: 'info', msg: 'x' })), 0);", /authpop\[\d+\] sent a descriptor; killing it/));
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
