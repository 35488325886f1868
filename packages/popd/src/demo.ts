/**
 * npm start: a demo popd on 127.0.0.1 (9995 implicit TLS, 9110 STLS) in
 * unprivileged mode. First start creates the state folder: a self-signed
 * certificate (openssl), two users with random passwords, their maildirs
 * with sample mail delivered through popmda. Prints a curl command.
 *
 * Started as root, the demo does not run popd as root: popd, popmda and
 * the maildirs run as "nobody" (the state folder is chowned to it), so the
 * demo needs no system user and no chroot directory. If "nobody" cannot
 * reach ./state (a home directory of mode 0700), the state goes to a
 * folder in the system's temporary directory instead.
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { isRoot, lookupUser } from '@popd/shared/privdrop';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const POPD = path.join(__dirname, 'main.js');
const POPMDA = path.join(ROOT, 'packages', 'mda', 'dist', 'main.js');
const TLS_PORT = 9995;
const STLS_PORT = 9110;
const USERS = ['alice', 'bob'];

function die(msg: string): never {
  process.stderr.write(`demo: ${msg}\n`);
  process.exit(1);
}

/** Every directory above dir can be searched by anyone. */
function reachable(dir: string): boolean {
  for (let d = dir; ; d = path.dirname(d)) {
    if ((fs.statSync(d).mode & 0o001) === 0) return false;
    if (d === path.dirname(d)) return true;
  }
}

const as = isRoot() ? lookupUser('nobody') : null;
if (isRoot() && as === null) die('running as root needs a user "nobody" to run the demo as');
const id = as ?? { uid: process.getuid!(), gid: process.getgid!() };
const state = as === null || reachable(ROOT) ? path.join(ROOT, 'state') : path.join(os.tmpdir(), 'popd-demo-state');
const file = (name: string): string => path.join(state, name);

function own(p: string): void {
  if (as !== null) fs.chownSync(p, as.uid, as.gid);
}

function setUp(): Record<string, string> {
  fs.mkdirSync(state, { recursive: true, mode: 0o755 });
  own(state);
  if (!fs.existsSync(file('cert.pem')) || !fs.existsSync(file('key.pem'))) {
    const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', file('key.pem'), '-out', file('cert.pem'), '-days', '365', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) die(`openssl could not make a certificate: ${r.error?.message ?? r.stderr.trim()}`);
    fs.chmodSync(file('key.pem'), 0o600);
    own(file('key.pem'));
    own(file('cert.pem'));
  }
  let passwords: Record<string, string> = {};
  if (fs.existsSync(file('passwords.json'))) passwords = JSON.parse(fs.readFileSync(file('passwords.json'), 'utf8')) as Record<string, string>;
  if (!USERS.every((u) => typeof passwords[u] === 'string')) {
    passwords = Object.fromEntries(USERS.map((u) => [u, crypto.randomBytes(9).toString('base64').replace(/[+/]/g, 'x')]));
    fs.writeFileSync(file('passwords.json'), JSON.stringify(passwords, null, 2) + '\n', { mode: 0o600 });
    fs.writeFileSync(file('authtab'), USERS.map((u) => `${u}\t${bcrypt.hashSync(passwords[u], 10)}\n`).join(''), { mode: 0o600 });
  }
  fs.writeFileSync(file('usertab'), USERS.map((u) => `${u}\t${id.uid}:${id.gid}:${file(path.join('mail', u))}\n`).join(''));
  for (const f of ['passwords.json', 'authtab', 'usertab']) own(file(f));
  fs.mkdirSync(file('mail'), { recursive: true, mode: 0o755 });
  own(file('mail'));
  for (const u of USERS) {
    const maildir = file(path.join('mail', u));
    if (fs.existsSync(maildir)) continue;
    for (const [i, subject] of ['Welcome to popd', 'A second message', 'Dots and sizes'].entries()) {
      const text = `From: demo@localhost\nTo: ${u}@localhost\nSubject: ${subject}\nDate: ${new Date().toUTCString()}\n\nHello ${u}, this is message ${i + 1}.\n${i === 2 ? '.a line that starts with a dot\n' : ''}`;
      const r = spawnSync(process.execPath, [POPMDA, '-m', maildir], { input: text, encoding: 'utf8', ...(as ? { uid: as.uid, gid: as.gid } : {}) });
      if (r.status !== 0) die(`popmda failed: ${r.stderr.trim()}`);
    }
  }
  return passwords;
}

function main(): void {
  const passwords = setUp();
  const args = [POPD, '-d', '-a', file('authtab'), '-u', file('usertab'), '-c', file('cert.pem'), '-k', file('key.pem'), '-l', `127.0.0.1:${TLS_PORT}`, '-s', `127.0.0.1:${STLS_PORT}`];
  const popd = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'pipe'], ...(as ? { uid: as.uid, gid: as.gid } : {}) });
  let told = false;
  popd.stderr!.on('data', (b: Buffer) => {
    process.stderr.write(b);
    if (told || !b.toString().includes('listening on')) return;
    told = true;
    const cert = path.relative(process.cwd(), file('cert.pem')) || file('cert.pem');
    process.stdout.write(
      [
        '',
        `popd demo is running${as ? ' (as nobody)' : ''}, state in ${state}`,
        ...USERS.map((u) => `  user ${u}  password ${passwords[u]}`),
        '',
        'List and fetch the first message over implicit TLS:',
        `  curl --cacert ${cert} -u ${USERS[0]}:${passwords[USERS[0]]} pop3s://127.0.0.1:${TLS_PORT}/`,
        `  curl --cacert ${cert} -u ${USERS[0]}:${passwords[USERS[0]]} pop3s://127.0.0.1:${TLS_PORT}/1`,
        'Or over STLS:',
        `  curl --ssl-reqd --cacert ${cert} -u ${USERS[1]}:${passwords[USERS[1]]} pop3://127.0.0.1:${STLS_PORT}/1`,
        '',
        'Ctrl-C stops it.',
        '',
      ].join('\n'),
    );
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => popd.kill('SIGTERM'));
  popd.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

main();
