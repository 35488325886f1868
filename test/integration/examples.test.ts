/** The examples/ an admin copies: the unit, the rc.d script, the certificate recipe, the _pop3d user. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { isRoot, ROOT, tmpdir } from '../lib/util';
import { haveTool } from '../lib/mailhost';

const EX = path.join(ROOT, 'examples');

test('examples/popd.service: systemd-analyze verify finds nothing', { skip: !haveTool('systemd-analyze') && 'systemd-analyze not installed' }, () => {
  const dir = tmpdir();
  // The unit's syntax and sandboxing options are checked, not popd: any executable stands in.
  const unit = path.join(dir, 'popd.service');
  fs.writeFileSync(unit, fs.readFileSync(path.join(EX, 'popd.service'), 'utf8').split('/usr/local/bin/popd').join('/bin/true'));
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', unit], { encoding: 'utf8' });
  assert.equal(r.stdout + r.stderr, '');
  assert.equal(r.status, 0);
});

test('examples/rc.d/popd parses as a shell script', () => {
  const r = spawnSync('sh', ['-n', path.join(EX, 'rc.d/popd')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test('examples/mkcert.sh makes a certificate for the host and a private key only its owner reads', { skip: !haveTool('openssl') && 'openssl not installed' }, () => {
  const dir = tmpdir();
  const cert = path.join(dir, 'c.crt');
  const key = path.join(dir, 'k.key');
  const r = spawnSync('sh', [path.join(EX, 'mkcert.sh'), 'pop.example.org', cert, key], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.statSync(key).mode & 0o777, 0o600);
  const text = spawnSync('openssl', ['x509', '-in', cert, '-noout', '-text', '-checkend', '86400'], { encoding: 'utf8' });
  assert.equal(text.status, 0, 'certificate expires within a day');
  assert.match(text.stdout, /DNS:pop\.example\.org/);
  const fromKey = spawnSync('openssl', ['pkey', '-in', key, '-pubout'], { encoding: 'utf8' }).stdout;
  const fromCert = spawnSync('openssl', ['x509', '-in', cert, '-noout', '-pubkey'], { encoding: 'utf8' }).stdout;
  assert.ok(fromKey.length > 0 && fromKey === fromCert, 'the key does not belong to the certificate');
  assert.equal(spawnSync('sh', [path.join(EX, 'mkcert.sh')]).status, 64);
});

test('examples/create-pop3d-user.sh creates _pop3d with no login and home /var/empty, and is idempotent', { skip: !isRoot && 'needs root (useradd)' }, () => {
  for (let i = 0; i < 2; i++) {
    const r = spawnSync('sh', [path.join(EX, 'create-pop3d-user.sh')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  }
  const pw = spawnSync('getent', ['passwd', '_pop3d'], { encoding: 'utf8' }).stdout.trim().split(':');
  assert.equal(pw[0], '_pop3d');
  assert.notEqual(pw[2], '0');
  assert.equal(pw[5], '/var/empty');
  assert.match(pw[6], /nologin$/);
  assert.ok(fs.statSync('/var/empty').isDirectory());
});
