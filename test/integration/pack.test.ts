/**
 * The package as an admin gets it: `npm pack` of the repository, installed
 * with `npm install -g --prefix` (no registry: the workspace packages and
 * dependencies are bundled), gives working commands and man pages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { BIN, isRoot, MAILUSER, ROOT, run, tmpdir } from '../lib/util';

/** Node's own headers, when installed, so the native modules rebuild without downloading them. */
const NODEDIR = path.dirname(path.dirname(process.execPath));
const nodedirEnv = fs.existsSync(path.join(NODEDIR, 'include/node/node.h')) ? { npm_config_nodedir: NODEDIR } : {};

function npm(args: string[], cwd: string): string {
  const r = spawnSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8', timeout: 300_000, env: { ...nodedirEnv, ...process.env } });
  assert.equal(r.status, 0, `npm ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

test('npm pack produces a tarball that installs with npm install -g and gives working popd, popmda, popctl', { timeout: 600_000 }, async (t) => {
  const dir = tmpdir('popd-pack-');
  const tarball = path.join(dir, npm(['pack', '--pack-destination', dir], ROOT).trim().split('\n').pop()!);
  const list = spawnSync('tar', ['tzf', tarball], { encoding: 'utf8' }).stdout.split('\n');
  for (const f of ['man/popd.8', 'man/popmda.8', 'man/popctl.8', 'man/authtab.5', 'man/usertab.5', 'examples/smtpd.conf', 'examples/mkcert.sh', 'examples/rc.d/popd', 'examples/popd.service']) {
    assert.ok(list.includes(`package/${f}`), `${f} is not in the tarball`);
  }
  assert.ok(!list.some((f) => f.startsWith('package/test/') || (f.endsWith('.ts') && !f.includes('/node_modules/'))), 'tests or TypeScript sources were packed');
  // The demo (npm start) is a development tool that runs as root: not for installed systems.
  assert.ok(!list.some((f) => f.startsWith('package/demo/') || (/\/demo\.js$/.test(f) && !f.includes('/node_modules/'))), 'the demo was packed');
  // The channel addon travels as source and is compiled by the install, for the machine it lands on.
  for (const f of ['binding.gyp', 'src/channel.c', 'install.js']) assert.ok(list.includes(`package/node_modules/@popd/channel/${f}`), `channel's ${f} is not in the tarball`);
  assert.ok(!list.some((f) => f.startsWith('package/node_modules/@popd/channel/build/')), 'a prebuilt channel addon was packed');
  // So does the worker's C part.
  for (const f of ['binding.gyp', 'src/wireedit.c']) assert.ok(list.includes(`package/node_modules/@popd/wrkrpop/${f}`), `wrkrpop's ${f} is not in the tarball`);
  assert.ok(!list.some((f) => f.startsWith('package/node_modules/@popd/wrkrpop/build/')), 'a prebuilt wireedit addon was packed');

  const prefix = path.join(dir, 'prefix');
  npm(['install', '-g', '--offline', '--prefix', prefix, tarball], dir);
  const bin = (name: string): string => path.join(prefix, 'bin', name);

  for (const name of ['popmda', 'popctl']) {
    const v = await run(bin(name), ['--version']);
    assert.equal(v.status, 0, `${name}: ${v.stderr}`);
    assert.equal(v.stdout.toString().trim(), JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
  }
  // The addon was built by the install: a message with a descriptor crosses a socketpair.
  const channelCheck = `
    const c = require(require.resolve('@popd/channel', { paths: [process.argv[1]] }));
    const [a, b] = c.socketpair('seqpacket');
    const rx = new c.Channel(b);
    rx.on('message', (d, fd) => { process.stdout.write(d.toString() + ':' + (fd > 2)); rx.close(); tx.close(); });
    const tx = new c.Channel(a);
    tx.send(Buffer.from('built'), 0);`;
  const ch = spawnSync(process.execPath, ['-e', channelCheck, path.join(prefix, 'lib/node_modules/popd')], { encoding: 'utf8' });
  assert.equal(ch.stdout, 'built:true', ch.stderr);
  const wireCheck = `
    const { WireEdit } = require(require.resolve('@popd/wrkrpop/wireedit', { paths: [process.argv[1]] }));
    const e = new WireEdit();
    const buf = Buffer.alloc(16);
    const end = e.edit(buf, 0, buf.write('a\\n.b'));
    process.stdout.write(Buffer.concat([buf.subarray(0, end), e.end()]).toString('latin1'));`;
  const we = spawnSync(process.execPath, ['-e', wireCheck, path.join(prefix, 'lib/node_modules/popd')], { encoding: 'utf8' });
  assert.equal(we.stdout, 'a\r\n..b\r\n.\r\n', we.stderr);
  for (const page of ['man8/popd.8', 'man8/popmda.8', 'man8/popctl.8', 'man5/authtab.5', 'man5/usertab.5']) {
    assert.ok(fs.existsSync(path.join(prefix, 'share/man', page)), `man page ${page} not installed`);
  }

  const hash = (await run(bin('popctl'), ['encrypt', '-c', '4'], { input: 'packed pw\n' })).stdout.toString().trim();
  assert.ok(bcrypt.compareSync('packed pw', hash));
  const maildir = path.join(dir, 'Maildir');
  const d = await run(bin('popmda'), ['-m', maildir], { input: 'Subject: packed\n\nhello\n' });
  assert.equal(d.status, 0, d.stderr);
  const [name] = fs.readdirSync(path.join(maildir, 'new'));
  assert.equal(fs.readFileSync(path.join(maildir, 'new', name), 'utf8'), 'Subject: packed\n\nhello\n');
  const users = path.join(dir, 'usertab');
  fs.writeFileSync(path.join(dir, 'authtab'), `u ${hash}\n`);
  fs.writeFileSync(users, `u ${MAILUSER.uid}:${MAILUSER.gid}:${maildir}\n`);
  const c = await run(bin('popctl'), ['check', '-a', path.join(dir, 'authtab'), '-u', users]);
  assert.equal(c.status, 0, c.stdout.toString() + c.stderr);
  assert.equal((await run(bin('popctl'), ['reindex', maildir])).status, 0);

  await t.test('popd', async (t2) => {
    if (!fs.existsSync(BIN.popd)) return t2.skip(`${path.relative(ROOT, BIN.popd)} is not built yet`);
    const v = await run(bin('popd'), ['--version'], { asRoot: true });
    assert.equal(v.status, 0, v.stderr);
    const cert = path.join(dir, 'c.crt');
    const key = path.join(dir, 'c.key');
    assert.equal(spawnSync('sh', [path.join(ROOT, 'examples/mkcert.sh'), 'localhost', cert, key]).status, 0);
    if (isRoot) fs.chownSync(key, MAILUSER.uid, MAILUSER.gid); // so that the unprivileged run below can read it
    // -n checks the configuration without binding, so the port needs to be free of nothing.
    const args = ['-n', '-a', path.join(dir, 'authtab'), '-u', users, '-c', cert, '-k', key, '-l', '127.0.0.1:9995'];
    const ok = await run(bin('popd'), args);
    assert.equal(ok.status, 0, ok.stderr);
    fs.writeFileSync(path.join(dir, 'authtab'), 'u not-a-hash\n');
    const bad = await run(bin('popd'), args);
    assert.equal(bad.status, 1, 'popd -n accepted a broken authtab');
  });
});
