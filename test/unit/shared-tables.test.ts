import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { checkSubdir, loadTables, parseAuthtab, parseUsertab } from '@popd/shared/tables';
import { tmpdir } from '../lib/util';

const HASH = '$2b$10$' + 'a'.repeat(53);

test('authtab: comments, blank lines, spaces and tabs, CRLF; the three bcrypt prefixes', () => {
  const text = `# users\n\nalice ${HASH}\nbob\t\t${HASH.replace('$2b$', '$2a$')}\r\ncarol@example.org  ${HASH.replace('$2b$', '$2y$')}  \n`;
  const r = parseAuthtab(text, 'authtab');
  assert.deepEqual(r.problems, []);
  assert.deepEqual([...r.value.keys()], ['alice', 'bob', 'carol@example.org']);
});

test('authtab: every malformed line is named with file:line, and no hash is quoted', () => {
  const secret = '$2b$10$' + 'S'.repeat(53);
  const text = [`alice ${secret}`, 'bob', `carol $1$md5$notbcrypt`, `alice ${HASH}`, `da/ve ${HASH}`, `erin $2b$03$${'x'.repeat(53)}`, `frank ${secret.slice(0, -1)}`].join('\n') + '\n';
  const r = parseAuthtab(text, '/etc/mail/authtab');
  assert.deepEqual(
    r.problems.map((p) => p.split(':').slice(0, 2).join(':')),
    ['/etc/mail/authtab:2', '/etc/mail/authtab:3', '/etc/mail/authtab:4', '/etc/mail/authtab:5', '/etc/mail/authtab:6', '/etc/mail/authtab:7'],
  );
  assert.match(r.problems[2], /duplicate user alice/);
  for (const p of r.problems) assert.ok(!p.includes('SSSS') && !p.includes('xxxx') && !p.includes('md5$notbcrypt'), p);
  assert.deepEqual([...r.value.keys()], ['alice']);
});

test('usertab: uid:gid:maildir, -e subdir, and what is refused', () => {
  const ok = parseUsertab('alice 1000:1000:/var/vmail/alice\n# c\nbob\t1001:1001:/var/vmail/b:ob\n', 'usertab', 'Maildir');
  assert.deepEqual(ok.problems, []);
  assert.equal(ok.value.get('alice')!.maildir, '/var/vmail/alice/Maildir');
  assert.equal(ok.value.get('bob')!.maildir, '/var/vmail/b:ob/Maildir');
  assert.deepEqual(ok.value.get('alice')!.uid, 1000);
  const bad = parseUsertab(['root 0:0:/root', 'a 1000:0:/x', 'b 1000:1000:relative', 'c 1000:1000:/x/../y', 'd 1000:/x', 'e 99999999999:1:/x'].join('\n'), 'u', undefined);
  assert.equal(bad.value.size, 0);
  assert.deepEqual(
    bad.problems.map((p) => p.replace(/^u:(\d+): .*?: /, '$1 ')),
    ['1 uid and gid must not be 0', '2 uid and gid must not be 0', '3 maildir must be an absolute path', '4 maildir must not contain ".."', '5 expected uid:gid:maildir', '6 expected uid:gid:maildir'],
  );
});

test('-e subdir must be relative and stay inside', () => {
  assert.equal(checkSubdir('Maildir'), null);
  assert.equal(checkSubdir('mail/inbox'), null);
  assert.equal(checkSubdir('Maildir/'), null);
  for (const bad of ['/abs', '../up', 'a/../../b', '', '/', './Maildir', 'a//b', 'a/./b']) assert.match(checkSubdir(bad) ?? '', /must be a relative path such as Maildir/, bad);
  // A trailing "/" does not end up in the maildir path.
  assert.equal(parseUsertab('alice 1000:1000:/m/alice\n', 'usertab', 'Maildir/').value.get('alice')?.maildir, '/m/alice/Maildir');
});

test('loadTables cross-checks the two files and reports unreadable ones', () => {
  const d = tmpdir();
  const a = path.join(d, 'authtab');
  const u = path.join(d, 'usertab');
  fs.writeFileSync(a, `alice ${HASH}\nbob ${HASH}\n`);
  fs.writeFileSync(u, 'alice 1000:1000:/m/alice\ncarol 1000:1000:/m/carol\n');
  const r = loadTables(a, u);
  assert.equal(r.problems.length, 2);
  assert.match(r.problems[0], /bob is in .*authtab but has no line here/);
  assert.match(r.problems[1], /carol is in .*usertab but has no line here/);
  const missing = loadTables(path.join(d, 'nope'), u);
  assert.match(missing.problems[0], /nope: cannot read: no such file/);
});
