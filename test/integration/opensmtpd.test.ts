/**
 * popd with its real neighbours, as in examples/: OpenSMTPD delivering to
 * virtual users through popmda, rsyslog receiving every program's lines,
 * popd serving the mail to a real POP3 client. Needs root (a private mount
 * namespace keeps the machine's syslog daemon and smtpd untouched).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, isRoot, MAILUSER, ROOT, run, tmpdir } from '../lib/util';
import { freePort, haveTool, MailHost, portOpen, waitFor } from '../lib/mailhost';

const EX = path.join(ROOT, 'examples');
const missing = ['smtpd', 'unshare', 'nsenter', 'rsyslogd', 'swaks', 'openssl', 'python3'].filter((t) => !haveTool(t));
const skipReason = !isRoot ? 'needs root (smtpd, a private mount namespace)' : missing.length ? `not installed: ${missing.join(', ')}` : false;

/** Replaces text that must be there: a change in examples/ breaks the test loudly rather than silently. */
function must(text: string, from: string | RegExp, to: string): string {
  assert.ok(typeof from === 'string' ? text.includes(from) : from.test(text), `examples changed: ${String(from)} not found`);
  return text.split(from as string).join(to);
}

interface Setup {
  dir: string;
  conf: string;
  authtab: string;
  usertab: string;
  cert: string;
  key: string;
  ports: { smtp: number; smtps: number; submission: number };
  passwords: Record<string, string>;
  hashes: string[];
}

/** examples/ with the paths, addresses and ports of a test. */
async function setup(): Promise<Setup> {
  const dir = tmpdir('popd-int-');
  const cert = path.join(dir, 'localhost.crt');
  const key = path.join(dir, 'localhost.key');
  const mk = spawnSync('sh', [path.join(EX, 'mkcert.sh'), 'localhost', cert, key], { encoding: 'utf8' });
  assert.equal(mk.status, 0, mk.stderr);
  const passwords: Record<string, string> = { alice: 'alice-Secret-1', bob: 'bob "Secret" 2' };
  const hashes: string[] = [];
  let authtab = '# test users\n';
  let usertab = '';
  for (const [user, pw] of Object.entries(passwords)) {
    const r = await run(BIN.popctl, ['encrypt', '-c', '6'], { input: pw + '\n' });
    assert.equal(r.status, 0, r.stderr);
    const hash = r.stdout.toString().trim();
    hashes.push(hash);
    authtab += `${user}\t${hash}\n`;
    usertab += `${user}\t${MAILUSER.uid}:${MAILUSER.gid}:${dir}/vmail/${user}\n`;
    fs.mkdirSync(path.join(dir, 'vmail', user), { recursive: true, mode: 0o755 });
    if (isRoot) for (const d of ['vmail', `vmail/${user}`]) fs.chownSync(path.join(dir, d), MAILUSER.uid, MAILUSER.gid);
  }
  fs.writeFileSync(path.join(dir, 'authtab'), authtab, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'usertab'), usertab);
  fs.copyFileSync(path.join(EX, 'virtuals'), path.join(dir, 'virtuals'));
  const ports = { smtp: await freePort(), smtps: await freePort(), submission: await freePort() };
  let conf = fs.readFileSync(path.join(EX, 'smtpd.conf'), 'utf8');
  conf = must(conf, '/etc/ssl/pop.example.org.crt', cert);
  conf = must(conf, '/etc/ssl/private/pop.example.org.key', key);
  conf = must(conf, '/etc/mail/', `${dir}/`);
  conf = must(conf, '/usr/local/bin/popmda', `${process.execPath} ${BIN.popmda}`);
  conf = must(conf, 'listen on lo0\n', `listen on 127.0.0.1 port ${ports.smtp}\n`);
  conf = must(conf, 'listen on egress tls ', `listen on 127.0.0.1 port ${ports.smtps} tls `);
  conf = must(conf, 'listen on egress port submission ', `listen on 127.0.0.1 port ${ports.submission} `);
  const confFile = path.join(dir, 'smtpd.conf');
  fs.writeFileSync(confFile, conf);
  return { dir, conf: confFile, authtab: path.join(dir, 'authtab'), usertab: path.join(dir, 'usertab'), cert, key, ports, passwords, hashes };
}

test('smtpd -n accepts examples/smtpd.conf with test paths; popctl check accepts the shared tables', { skip: skipReason }, async () => {
  const s = await setup();
  const r = spawnSync('smtpd', ['-n', '-f', s.conf], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /configuration OK/);
  const c = await run(BIN.popctl, ['check', '-a', s.authtab, '-u', s.usertab, '-e', 'Maildir'], { asRoot: true });
  assert.equal(c.status, 78, 'the maildirs do not exist before the first delivery');
  // And the shipped samples are well-formed tables too.
  const ex = spawnSync(process.execPath, [BIN.popctl, 'check', '-a', path.join(EX, 'authtab'), '-u', path.join(EX, 'usertab')], { encoding: 'utf8' });
  assert.doesNotMatch(ex.stdout, /authtab:|usertab:\d/, 'examples/authtab or usertab has a malformed line');
});

/** A message with what SMTP transparency and mbox-minded software like to break. */
function message(to: string): string {
  return [
    `From: sender@example.net`,
    `To: ${to}`,
    `Subject: test for ${to}`,
    `Message-ID: <${crypto.randomUUID()}@example.net>`,
    'Date: Sun, 22 Nov 2026 08:00:00 +0000', // or smtpd adds one
    '',
    'first line',
    '.leading dot (dot-stuffed on the wire)',
    'From the start of a line',
    '8bit: caf\u00e9',
    '',
  ].join('\n');
}

const SEND = `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.sendmail(sys.argv[2], [sys.argv[3]], sys.stdin.buffer.read())
s.quit()
`;

/** Received: headers, each with its continuation lines. */
const RECEIVED = /^(?:Received: [^\n]*\n(?:[ \t][^\n]*\n)*)+$/;

test('OpenSMTPD delivers to virtual users through popmda; rsyslog logs it; popd serves it to mpop', { skip: skipReason, timeout: 180_000 }, async (t) => {
  const s = await setup();
  const host = await MailHost.start(s.dir);
  try {
    let rules = fs.readFileSync(path.join(EX, 'rsyslog.conf'), 'utf8');
    rules = must(rules, '/var/log/popd.log', path.join(s.dir, 'popd.log'));
    await host.startSyslog(`${rules}\nmail.* action(type="omfile" file="${path.join(s.dir, 'mail.log')}")`);
    const smtpd = host.spawn(['smtpd', '-d', '-f', s.conf]);
    await waitFor('smtpd listening', async () => {
      if (smtpd.exitCode !== null) throw new Error(`smtpd exited: ${host.output.get(smtpd)}`);
      return portOpen(s.ports.smtp);
    });

    const sent: Record<string, string> = {};
    for (const user of ['alice', 'bob']) {
      const to = `${user}@example.org`;
      sent[user] = message(to);
      // Python's smtplib sends the bytes as they are (swaks adds a line at the end).
      const r = spawnSync('python3', ['-c', SEND, String(s.ports.smtp), 'sender@example.net', to], { input: sent[user], encoding: 'utf8' });
      assert.equal(r.status, 0, `smtplib to ${to}: ${r.stdout}${r.stderr}`);
    }
    const unknown = spawnSync('swaks', ['--silent', '2', '--server', '127.0.0.1', '--port', String(s.ports.smtp), '--to', 'nobody@example.org'], { encoding: 'utf8' });
    assert.notEqual(unknown.status, 0, 'smtpd accepted a recipient that is not in the virtual table');

    for (const user of ['alice', 'bob']) {
      const maildir = path.join(s.dir, 'vmail', user, 'Maildir');
      // popmda links the message into new/, then appends its popcache line: wait for both.
      const popcache = path.join(maildir, 'popcache');
      await waitFor(`delivery to ${user}`, () => fs.existsSync(path.join(maildir, 'new')) && fs.readdirSync(path.join(maildir, 'new')).length === 1 && fs.existsSync(popcache) && fs.readFileSync(popcache, 'latin1').endsWith('\n'));
      const [name] = fs.readdirSync(path.join(maildir, 'new'));
      const file = path.join(maildir, 'new', name);
      const stored = fs.readFileSync(file, 'latin1');
      // smtpd prepends these for an mda; popmda adds nothing without -E, -f or -r.
      const prefix = `Return-Path: <sender@example.net>\nDelivered-To: ${user}@example.org\n`;
      const body = Buffer.from(sent[user], 'utf8').toString('latin1');
      assert.ok(stored.startsWith(prefix), `smtpd's headers missing: ${stored.slice(0, 200)}`);
      assert.equal(stored.split('\nReturn-Path:').length, 1, 'Return-Path: twice');
      // OpenSMTPD 6.8 ends what it hands an mda with one more "\n"; popmda keeps every byte it gets.
      const end = stored.endsWith(body + '\n') ? body + '\n' : body;
      assert.ok(stored.endsWith(end), 'the message text was not stored byte for byte');
      assert.match(stored.slice(prefix.length, stored.length - end.length), RECEIVED, 'only smtpd Received: headers may come between');
      assert.equal(fs.statSync(file).uid, MAILUSER.uid, 'smtpd ran popmda as the usertab uid');
      const bytes = fs.readFileSync(file);
      const octets = bytes.length + bytes.toString('latin1').split('\n').length - 1; // all LF on disk: each becomes CRLF
      assert.deepEqual(fs.readFileSync(popcache, 'latin1'), `${name} ${octets} ${crypto.createHash('sha256').update(name).digest('hex')}\n`);
      assert.match(name, new RegExp(`,S=${bytes.length},W=${octets}$`));
    }

    const clean = await run(BIN.popctl, ['check', '-a', s.authtab, '-u', s.usertab, '-e', 'Maildir'], { asRoot: true });
    assert.equal(clean.status, 0, `after delivery the shared tables and maildirs are clean: ${clean.stdout}`);

    await t.test('the authtab is smtpd\'s credentials table: SMTP AUTH on the submission port', (t2) => {
      const py = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
def login(user, pw):
    s = smtplib.SMTP("localhost", int(sys.argv[1]), timeout=20)
    try:
        s.starttls(context=ctx)
    except ssl.SSLError as e:
        print("notls", e)
        sys.exit(0)
    try:
        s.login(user, pw)
        return "ok"
    except smtplib.SMTPAuthenticationError:
        return "refused"
    finally:
        s.quit()
print(login("alice", sys.argv[3]), login("alice", "wrong"))
`;
      const r = spawnSync('python3', ['-c', py, String(s.ports.submission), s.cert, s.passwords.alice], { encoding: 'utf8' });
      // smtpd offers AUTH only after STARTTLS; Debian's OpenSMTPD 6.8 on OpenSSL 3 fails every TLS handshake
      // ("missing private key" in its privsep signer), whatever the key type.
      if (r.stdout.startsWith('notls')) return t2.skip(`this smtpd cannot do TLS, so no AUTH: ${r.stdout.trim()}`);
      assert.equal(r.stdout.trim(), 'ok refused', r.stderr);
    });

    const logFile = path.join(s.dir, 'popd.log');
    await waitFor('popmda lines in the syslog file', () => fs.existsSync(logFile) && (fs.readFileSync(logFile, 'utf8').match(/ popmda\[\d+\]: delivered /g) ?? []).length >= 2);

    await t.test('popd serves the mail to mpop, byte-exact, UIDLs stable across two fetches', async (t2) => {
      if (!fs.existsSync(BIN.popd)) return t2.skip(`${path.relative(ROOT, BIN.popd)} is not built yet`);
      if (!haveTool('mpop')) return t2.skip('mpop not installed');
      await fetchWithMpop(host, s);
      await waitFor('popd, authpop and wrkrpop lines in the syslog file', () => ['popd', 'authpop', 'wrkrpop'].every((id) => new RegExp(` ${id}\\[\\d+\\]: `).test(fs.readFileSync(logFile, 'utf8'))));
      await waitFor('authpop and wrkrpop lines about bob after the syslog daemon restarted', () => {
        const log = fs.readFileSync(logFile, 'utf8');
        return / authpop\[\d+\]: .*\bbob\b/.test(log) && / wrkrpop\[\d+\]: .*\bbob\b/.test(log);
      });
    });

    const logs = fs.readFileSync(logFile, 'utf8') + fs.readFileSync(path.join(s.dir, 'mail.log'), 'utf8');
    for (const line of logs.split('\n').filter(Boolean)) {
      assert.match(line, / (popd|authpop|wrkrpop|popmda)\[\d+\]: /, `unexpected line at facility mail: ${line}`);
      for (const secret of [...Object.values(s.passwords), ...s.hashes]) assert.ok(!line.includes(secret), `a password or hash was logged: ${line}`);
      assert.ok(!line.includes('8bit: caf'), 'message text was logged');
    }
  } finally {
    await host.stop();
  }
});

/** Fetches both users' mail twice with mpop from a real popd (as root: real chroot and setuid) and checks it. */
async function fetchWithMpop(host: MailHost, s: Setup): Promise<void> {
  assert.equal(spawnSync('sh', [path.join(EX, 'create-pop3d-user.sh')], { stdio: 'inherit' }).status, 0);
  const port = await freePort();
  // Without -d: popd detaches and logs through syslog, as in production.
  const argv = [process.execPath, BIN.popd, '-a', s.authtab, '-u', s.usertab, '-e', 'Maildir', '-c', s.cert, '-k', s.key, '-l', `127.0.0.1:${port}`];
  const launcher = host.spawn(argv);
  const status = await new Promise<number | null>((r) => launcher.once('exit', r));
  assert.equal(status, 0, `popd did not start: ${host.output.get(launcher)}`);
  const pid = pidOf(argv);
  assert.ok(pid, 'the detached popd is not running');
  try {
    await waitFor('popd listening', () => portOpen(port));
    for (const user of ['alice', 'bob']) {
      // popd writes its children's records long after it connected to /dev/log: a restarted syslog daemon must still get them.
      if (user === 'bob') await host.restartSyslog();
      const inbox = path.join(s.dir, `fetched-${user}`);
      for (const d of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(inbox, d), { recursive: true });
      const rc = path.join(s.dir, `mpoprc-${user}`);
      fs.writeFileSync(
        rc,
        [
          'defaults',
          'tls on',
          'tls_starttls off',
          `tls_trust_file ${s.cert}`,
          'auth user',
          'received_header off',
          `uidls_file ${s.dir}/uidls-${user}`,
          `account ${user}`,
          'host localhost',
          `port ${port}`,
          `user ${user}`,
          `passwordeval cat ${s.dir}/pw-${user}`,
          'keep on',
          `delivery maildir ${inbox}`,
        ].join('\n') + '\n',
        { mode: 0o600 },
      );
      fs.writeFileSync(path.join(s.dir, `pw-${user}`), s.passwords[user], { mode: 0o600 });
      for (let round = 1; round <= 2; round++) {
        const r = spawnSync('mpop', ['-C', rc, '-q', user], { encoding: 'utf8', timeout: 60_000 });
        assert.equal(r.status, 0, `mpop round ${round} for ${user}: ${r.stdout}${r.stderr}`);
        const got = fs.readdirSync(path.join(inbox, 'new'));
        assert.equal(got.length, 1, `round ${round}: ${user} has ${got.length} messages (a changed UIDL means a second copy)`);
        const maildir = path.join(s.dir, 'vmail', user, 'Maildir');
        const [served] = fs.readdirSync(path.join(maildir, 'cur'));
        assert.deepEqual(fs.readFileSync(path.join(inbox, 'new', got[0])), fs.readFileSync(path.join(maildir, 'cur', served)), 'fetched bytes differ');
        const uid = crypto.createHash('sha256').update(served.split(':')[0]).digest('hex');
        assert.ok(fs.readFileSync(path.join(s.dir, `uidls-${user}`), 'latin1').includes(uid), 'mpop saw another UIDL');
      }
    }
  } finally {
    process.kill(pid, 'SIGTERM');
    await waitFor('popd to stop', () => pidOf(argv) === null);
  }
}

/** The pid of the process running exactly argv (the detached popd this test started), or null. */
function pidOf(argv: string[]): number | null {
  const want = argv.join('\0') + '\0';
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8') === want) return Number(p);
    } catch {
      // gone meanwhile
    }
  }
  return null;
}
