/**
 * npm start: a demo popd on 127.0.0.1 (9995 implicit TLS, 9110 STLS; other
 * ports with --tls-port and --stls-port) in unprivileged mode. First start
 * creates ./state: a self-signed certificate (openssl), two users with
 * random passwords, their maildirs with sample mail delivered through
 * popmda. Prints curl commands. A development tool: not part of the package.
 *
 * Started as root, the demo does not run popd as root: popd, popmda and
 * the maildirs run as "nobody", so the demo needs no system user and no
 * chroot directory; "nobody" must then be able to reach the checkout, or it
 * could not even load popd. Root writes only into a ./state that it made
 * itself and no one else can write: one that is a symbolic link, someone
 * else's or writable by others is refused and left untouched. (The earlier
 * fallback, a fixed name in the system's temporary directory, let any local
 * user prepare it with links for root to write and chown through.) Files
 * are created with O_EXCL|O_NOFOLLOW and handed to "nobody" through their
 * descriptors.
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import bcrypt from 'bcryptjs';
import { isRoot, lookupUser } from '@popd/shared/privdrop';

// Compiled to demo/dist/demo.js.
const ROOT = path.resolve(__dirname, '..', '..');
const POPD = path.join(ROOT, 'packages', 'popd', 'dist', 'main.js');
const POPMDA = path.join(ROOT, 'packages', 'mda', 'dist', 'main.js');
const USERS = ['alice', 'bob'];

function die(msg: string): never {
  process.stderr.write(`demo: ${msg}\n`);
  process.exit(1);
}

function port(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) die(`not a port: ${value}`);
  return n;
}

/** dir and every directory above it can be searched by anyone. */
function reachable(dir: string): boolean {
  for (let d = dir; ; d = path.dirname(d)) {
    if ((fs.statSync(d).mode & 0o001) === 0) return false;
    if (d === path.dirname(d)) return true;
  }
}

/** The user popd and popmda run as: "nobody" when started as root, else the invoking user (null: no change). */
const as = isRoot() ? lookupUser('nobody') : null;
if (isRoot() && as === null) die('running as root needs a user "nobody" to run the demo as');
const id = as ?? { uid: process.getuid!(), gid: process.getgid!() };

/**
 * Refuses, touching nothing, a state folder that this user did not make for
 * itself: only then can nothing in it be a link or file someone else put
 * there. Returns whether it exists.
 */
function checkState(dir: string): boolean {
  const st = fs.lstatSync(dir, { throwIfNoEntry: false });
  if (st === undefined) return false;
  const remove = 'remove it to start afresh';
  if (st.isSymbolicLink()) die(`${dir} is a symbolic link, which the demo does not follow: ${remove}`);
  if (!st.isDirectory()) die(`${dir} is not a directory: ${remove}`);
  if (st.uid !== process.getuid!()) {
    const older = as !== null && st.uid === as.uid ? ' (an older demo gave it to "nobody")' : '';
    die(`${dir} belongs to uid ${st.uid}, not to uid ${process.getuid!()} running the demo${older}: ${remove}`);
  }
  if ((st.mode & 0o022) !== 0) die(`${dir} can be written by others (mode ${(st.mode & 0o777).toString(8)}): ${remove}`);
  return true;
}

/** A new file in a folder of ours; O_EXCL|O_NOFOLLOW: it fails rather than write through anything already there. forDemo: owned by the demo user (popd reads it). */
function writeNew(file: string, data: string, mode: number, forDemo: boolean): void {
  const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
  const fd = fs.openSync(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
  try {
    fs.writeSync(fd, data);
    if (forDemo && as !== null) fs.fchownSync(fd, as.uid, as.gid);
  } finally {
    fs.closeSync(fd);
  }
}

/** Fills a new, empty state folder of ours; the files name it as final (where it will be used). */
function fill(dir: string, final: string): void {
  const file = (name: string): string => path.join(dir, name);
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '-', '-out', '-', '-days', '365', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { encoding: 'utf8' });
  const pem = (kind: string): string | undefined => new RegExp(`-----BEGIN ${kind}-----\\n[^-]+-----END ${kind}-----\\n`).exec(r.stdout ?? '')?.[0];
  const [key, cert] = [pem('PRIVATE KEY'), pem('CERTIFICATE')];
  if (r.error || r.status !== 0 || key === undefined || cert === undefined) die(`openssl could not make a certificate: ${r.error?.message ?? r.stderr.trim()}`);
  writeNew(file('key.pem'), key, 0o600, true);
  writeNew(file('cert.pem'), cert, 0o644, false);
  const passwords = Object.fromEntries(USERS.map((u) => [u, crypto.randomBytes(9).toString('base64').replace(/[+/]/g, 'x')]));
  writeNew(file('passwords.json'), JSON.stringify(passwords, null, 2) + '\n', 0o600, false);
  writeNew(file('authtab'), USERS.map((u) => `${u}\t${bcrypt.hashSync(passwords[u], 10)}\n`).join(''), 0o600, true);
  writeNew(file('usertab'), USERS.map((u) => `${u}\t${id.uid}:${id.gid}:${path.join(final, 'mail', u)}\n`).join(''), 0o644, false);
  fs.mkdirSync(file('mail'), { mode: 0o755 });
  if (as !== null) fs.lchownSync(file('mail'), as.uid, as.gid);
  for (const u of USERS) {
    for (const [i, subject] of ['Welcome to popd', 'A second message', 'Dots and sizes'].entries()) {
      const text = `From: demo@localhost\nTo: ${u}@localhost\nSubject: ${subject}\nDate: ${new Date().toUTCString()}\n\nHello ${u}, this is message ${i + 1}.\n${i === 2 ? '.a line that starts with a dot\n' : ''}`;
      const d = spawnSync(process.execPath, [POPMDA, '-m', file(path.join('mail', u))], { input: text, encoding: 'utf8', ...(as ? { uid: as.uid, gid: as.gid } : {}) });
      if (d.status !== 0) die(`popmda failed: ${d.stderr.trim()}`);
    }
  }
}

/** ./state, checked, or made and filled when there is none. */
function setUp(): string {
  if (as !== null && !reachable(ROOT)) die(`"nobody", which the demo runs popd as, cannot reach ${ROOT} (a directory on the way is closed to others, as /root is): put the checkout where others can read it, or run npm start as an ordinary user`);
  const state = path.join(ROOT, 'state');
  if (checkState(state)) return state;
  // Filled beside it (mkdtemp: new and ours) and renamed into place: a state folder is complete or absent.
  const dir = fs.mkdtempSync(`${state}.new-`);
  fs.chmodSync(dir, 0o755);
  fill(dir, state);
  fs.renameSync(dir, state);
  return state;
}

function main(): void {
  const opts = parseArgs({ options: { 'tls-port': { type: 'string' }, 'stls-port': { type: 'string' } } }).values;
  const tlsPort = port(opts['tls-port'], 9995);
  const stlsPort = port(opts['stls-port'], 9110);
  const state = setUp();
  const file = (name: string): string => path.join(state, name);
  let passwords: Record<string, string>;
  try {
    passwords = JSON.parse(fs.readFileSync(file('passwords.json'), 'utf8')) as Record<string, string>;
  } catch (err) {
    die(`${state} is not a state folder the demo made (${(err as Error).message}): remove it to start afresh`);
  }
  const args = [POPD, '-d', '-a', file('authtab'), '-u', file('usertab'), '-c', file('cert.pem'), '-k', file('key.pem'), '-l', `127.0.0.1:${tlsPort}`, '-s', `127.0.0.1:${stlsPort}`];
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
        `  curl --cacert ${cert} -u ${USERS[0]}:${passwords[USERS[0]]} pop3s://127.0.0.1:${tlsPort}/`,
        `  curl --cacert ${cert} -u ${USERS[0]}:${passwords[USERS[0]]} pop3s://127.0.0.1:${tlsPort}/1`,
        'Or over STLS:',
        `  curl --ssl-reqd --cacert ${cert} -u ${USERS[1]}:${passwords[USERS[1]]} pop3://127.0.0.1:${stlsPort}/1`,
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
