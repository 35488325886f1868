/** Real POP3 clients from Debian against popd in unprivileged mode: curl (pop3s://, pop3:// with --ssl-reqd), mpop (pipelining, UIDL, sizes) and fetchmail (UIDL bookkeeping, deletion with QUIT). */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { haveTool } from '../lib/mailhost';
import { PopdFixture } from '../lib/popd';

const crlf = (s: string): string => s.replace(/\n/g, '\r\n');
const messages = [
  'From: a@example.org\nSubject: one\n\nfirst\n.dot line\n',
  'From: b@example.org\nSubject: two\n\n' + 'second line\n'.repeat(5000),
  'From: c@example.org\nSubject: three\r\n\r\nCRLF already\r\n',
];

describe('real clients', () => {
  let p: PopdFixture;
  before(async () => {
    p = await PopdFixture.start({ accounts: [{ user: 'gina', pass: 'gina pw!', messages }, { user: 'hank', pass: 'hank-pw', messages }, { user: 'ivy', pass: 'ivy pw', messages }], mode: 'unprivileged' });
  });
  after(async () => {
    assert.equal((await p.stop()).code, 0);
  });

  const curl = (args: string[]) => spawnSync('curl', ['-sS', '-k', '--max-time', '20', ...args], { encoding: 'latin1' });

  test('curl pop3s:// lists and retrieves', { skip: !haveTool('curl') && 'curl is not installed' }, () => {
    const url = `pop3s://127.0.0.1:${p.tlsPort}/`;
    const list = curl(['-u', 'gina:gina pw!', url]);
    assert.equal(list.status, 0, list.stderr);
    assert.equal(list.stdout, messages.map((m, i) => `${i + 1} ${Buffer.byteLength(crlf(m).replace(/\r\r/g, '\r'))}\r\n`).join(''));
    for (const [i, m] of messages.entries()) {
      const r = curl(['-u', 'gina:gina pw!', url + (i + 1)]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, crlf(m).replace(/\r\r/g, '\r'));
    }
    const wrong = curl(['-u', 'gina:nope', url]);
    assert.equal(wrong.status, 67, 'login denied');
  });

  test('curl pop3:// with --ssl-reqd goes through STLS; without TLS it cannot log in', { skip: !haveTool('curl') && 'curl is not installed' }, () => {
    const url = `pop3://127.0.0.1:${p.stlsPort}/1`;
    const r = curl(['--ssl-reqd', '-u', 'hank:hank-pw', url]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, crlf(messages[0]));
    const clear = curl(['-u', 'hank:hank-pw', url]);
    assert.notEqual(clear.status, 0);
  });

  for (const stls of [false, true]) {
    test(`mpop over ${stls ? 'STLS' : 'implicit TLS'}: pipelined fetch with strict UIDL and size checks, then nothing new`, { skip: !haveTool('mpop') && 'mpop is not installed' }, () => {
      const dir = fs.mkdtempSync(path.join(p.dir, 'mpop-'));
      const out = path.join(dir, 'Maildir');
      for (const d of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(out, d), { recursive: true });
      const rc = path.join(dir, 'mpoprc');
      fs.writeFileSync(
        rc,
        [
          'account test',
          'host 127.0.0.1',
          `port ${stls ? p.stlsPort : p.tlsPort}`,
          'tls on',
          `tls_starttls ${stls ? 'on' : 'off'}`,
          'tls_certcheck off',
          'auth user',
          `user ${stls ? 'hank' : 'gina'}`,
          `password ${stls ? 'hank-pw' : 'gina pw!'}`,
          'pipelining on',
          'keep on',
          `uidls_file ${path.join(dir, 'uidls')}`,
          `delivery maildir ${out}`,
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      const mpop = () => spawnSync('mpop', ['-C', rc, '-q', 'test'], { encoding: 'utf8', timeout: 30_000 });
      const first = mpop();
      assert.equal(first.status, 0, first.stderr + first.stdout);
      const got = ['new', 'cur'].flatMap((d) => fs.readdirSync(path.join(out, d)).map((f) => fs.readFileSync(path.join(out, d, f), 'latin1')));
      assert.equal(got.length, messages.length);
      // mpop delivers with LF line ends and may add its own header lines on top.
      for (const m of messages) assert.ok(got.some((g) => g.endsWith(m.replace(/\r\n/g, '\n').split('\n\n').slice(1).join('\n\n'))), `message ${m.slice(0, 30)} arrived intact`);
      const second = mpop();
      assert.equal(second.status, 0, second.stderr + second.stdout);
      assert.equal(['new', 'cur'].flatMap((d) => fs.readdirSync(path.join(out, d))).length, messages.length, 'nothing fetched twice');
    });
  }

  test('fetchmail over STLS and implicit TLS: keeps and remembers by UIDL, then fetches with delete and the maildir is empty', { skip: !haveTool('fetchmail') && 'fetchmail is not installed' }, () => {
    const dir = fs.mkdtempSync(path.join(p.dir, 'fetchmail-'));
    const out = path.join(dir, 'out');
    const serverFiles = (): string[] => ['new', 'cur'].flatMap((d) => fs.readdirSync(path.join(p.maildir('ivy'), d)));
    // Each message goes to the mda on its own; the separator line lets the test split them again.
    const rc = (stls: boolean, keep: boolean): string => {
      const f = path.join(dir, `rc-${stls}-${keep}`);
      fs.writeFileSync(
        f,
        [
          `set idfile "${path.join(dir, 'fetchids')}"`,
          `poll 127.0.0.1 protocol pop3 port ${stls ? p.stlsPort : p.tlsPort} uidl`,
          `  user "ivy" there with password "ivy pw" is "ivy" here`,
          `  ${stls ? '' : 'ssl '}sslproto 'tls1.3+' no sslcertck`,
          `  ${keep ? 'keep' : 'fetchall nokeep'}`,
          `  mda "sh -c 'cat >> ${out}; echo ==== >> ${out}'"`,
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      return f;
    };
    const fetchmail = (f: string) => spawnSync('fetchmail', ['-f', f, '--nodetach', '--nosyslog', '--silent'], { encoding: 'latin1', timeout: 60_000, env: { ...process.env, HOME: dir } });
    const fetched = (): string[] => (fs.existsSync(out) ? fs.readFileSync(out, 'latin1').split('====\n').slice(0, -1) : []);
    const bodies = messages.map((m) => m.replace(/\r\n/g, '\n').split('\n\n').slice(1).join('\n\n'));

    const first = fetchmail(rc(true, true));
    assert.equal(first.status, 0, first.stderr + first.stdout);
    // fetchmail delivers LF line ends with its own Received: on top.
    assert.equal(fetched().length, messages.length);
    for (const b of bodies) assert.ok(fetched().some((g) => g.endsWith(b)), `message ending ${JSON.stringify(b.slice(-20))} arrived intact`);
    assert.equal(serverFiles().length, messages.length, 'keep leaves the mail on the server');

    const again = fetchmail(rc(false, true));
    assert.equal(again.status, 1, `exit 1 means no new mail: ${again.stderr}`);
    assert.equal(fetched().length, messages.length, 'nothing fetched twice');

    const all = fetchmail(rc(false, false));
    assert.equal(all.status, 0, all.stderr + all.stdout);
    assert.equal(fetched().length, 2 * messages.length);
    assert.deepEqual(serverFiles(), [], 'DELE and QUIT removed every message');
  });
});
