/**
 * The POP3 client that drives both servers of compare.bench.ts alike:
 * implicit TLS 1.3 over loopback with a full handshake on every connection
 * (no session resumption), the tests' Pop3Client for the protocol, any number
 * of connections at once from this one Node process.
 */
import path from 'node:path';
import tls from 'node:tls';

// Static imports would compile to "../test/lib/...", which does not exist next to bench/dist: load the compiled helpers from test/dist.
const testLib = (name: string): string => path.join(__dirname, '..', '..', 'test', 'dist', 'lib', name);
const { connectTls, login } = require(testLib('pop3tls')) as typeof import('../test/lib/pop3tls');
type Pop3Client = import('../test/lib/pop3').Pop3Client;
export type { Pop3Client };

export interface Cred {
  user: string;
  pass: string;
}

const TLS13: tls.ConnectionOptions = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' };

/** A server that stops answering must not hang the benchmark. */
const IDLE_MS = 120_000;

/** Connects and reads the greeting; throws unless it is +OK. */
export async function connect(port: number): Promise<Pop3Client> {
  const c = await connectTls(port, TLS13);
  const sock = c.io as tls.TLSSocket;
  sock.setTimeout(IDLE_MS, () => sock.destroy(new Error(`no answer for ${IDLE_MS / 1000} s`)));
  const greeting = await c.line();
  if (!greeting.startsWith('+OK')) {
    sock.destroy();
    throw new Error(`greeting: ${greeting}`);
  }
  return c;
}

/** USER and PASS; throws with the server's answer unless +OK (and then closes). */
export async function logIn(c: Pop3Client, cred: Cred): Promise<void> {
  const answer = await login(c, cred.user, cred.pass);
  if (!answer.startsWith('+OK')) {
    c.io.destroy();
    throw new Error(`login ${cred.user}: ${answer}`);
  }
}

/** QUIT, and the server's close. */
export async function quit(c: Pop3Client): Promise<void> {
  const answer = await c.cmd('QUIT');
  await c.rest();
  if (!answer.startsWith('+OK')) throw new Error(`QUIT: ${answer}`);
}

/** The negotiated TLS parameters, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519". */
export async function tlsParams(port: number): Promise<string> {
  const c = await connect(port);
  const s = c.io as tls.TLSSocket;
  const kx = s.getEphemeralKeyInfo();
  const text = `${s.getProtocol() ?? '?'} ${s.getCipher().name} ${kx !== null && 'name' in kx ? String(kx.name) : ''}`;
  await quit(c);
  return text;
}

/** Connect, TLS, greeting, USER, PASS, QUIT answered; returns the ms from connect to the answer to PASS. */
export async function loginCycle(port: number, cred: Cred): Promise<number> {
  const t0 = performance.now();
  const c = await connect(port);
  await logIn(c, cred);
  const ms = performance.now() - t0;
  await quit(c);
  return ms;
}

export interface LoadResult {
  logins: number;
  errors: number;
  firstError: string;
  /** Connect to PASS answered, of every login, in ms. */
  latencies: number[];
  seconds: number;
}

/**
 * clients connections at a time, each logging in and out again and again as
 * its own user (creds[k]) until seconds have passed and at least minLogins
 * logins are done; the rate counts the logins still running at the deadline.
 */
export async function loginLoad(port: number, creds: Cred[], clients: number, seconds: number, minLogins = 0): Promise<LoadResult> {
  const r: LoadResult = { logins: 0, errors: 0, firstError: '', latencies: [], seconds: 0 };
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, k) => {
      // Past the deadline only to reach minLogins, and not on and on when logins fail.
      while (performance.now() < deadline || (r.logins < minLogins && r.errors < 100)) {
        try {
          r.latencies.push(await loginCycle(port, creds[k % creds.length]));
          r.logins++;
        } catch (err) {
          r.errors++;
          r.firstError ||= (err as Error).message;
        }
      }
    }),
  );
  r.seconds = (performance.now() - t0) / 1000;
  return r;
}

/** Every cred logs in once, clients at a time (warms up both servers: first logins create index files). */
export async function eachOnce(port: number, creds: Cred[], clients: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < creds.length) await loginCycle(port, creds[next++]);
    }),
  );
}

/** A logged-in session. */
export async function session(port: number, cred: Cred): Promise<Pop3Client> {
  const c = await connect(port);
  await logIn(c, cred);
  return c;
}

/** A multi-line command's answer: its lines, and the ms from sending it to its terminator. */
export async function timedMulti(c: Pop3Client, cmd: string): Promise<{ ms: number; lines: string[] }> {
  const t0 = performance.now();
  c.send(cmd);
  const r = await c.reply(true);
  const ms = performance.now() - t0;
  if (r.body === null) throw new Error(`${cmd}: ${r.status}`);
  const text = r.body.toString('latin1');
  return { ms, lines: text === '' ? [] : text.slice(0, -2).split('\r\n') };
}

/** LIST as a map from message number to octets. */
export async function list(c: Pop3Client): Promise<Map<number, number>> {
  const sizes = new Map<number, number>();
  for (const l of (await timedMulti(c, 'LIST')).lines) {
    const [n, octets] = l.split(' ').map(Number);
    sizes.set(n, octets);
  }
  return sizes;
}

/** Connect and USER, then the ms from sending PASS to the answer to STAT; the open session and STAT's message count. */
export async function timedOpen(port: number, cred: Cred): Promise<{ c: Pop3Client; ms: number; count: number }> {
  const c = await connect(port);
  const u = await c.cmd(`USER ${cred.user}`);
  if (!u.startsWith('+OK')) throw new Error(`USER: ${u}`);
  const t0 = performance.now();
  const p = await c.cmd(`PASS ${cred.pass}`);
  if (!p.startsWith('+OK')) throw new Error(`login ${cred.user}: ${p}`);
  const stat = await c.cmd('STAT');
  const ms = performance.now() - t0;
  if (!stat.startsWith('+OK ')) throw new Error(`STAT: ${stat}`);
  return { c, ms, count: Number(stat.split(' ')[1]) };
}

/**
 * RETR of every message in sizes (LIST's answer), window commands in flight
 * (1: one at a time); each body, unstuffed, must have LIST's octet count.
 * Returns the octets and the ms from the first command to the last terminator.
 */
export async function retrAll(c: Pop3Client, sizes: Map<number, number>, window: number): Promise<{ octets: number; ms: number }> {
  const msgs = [...sizes.keys()];
  let sent = 0;
  let octets = 0;
  const t0 = performance.now();
  while (sent < Math.min(window, msgs.length)) c.send(`RETR ${msgs[sent++]}`);
  for (const n of msgs) {
    const r = await c.reply(true);
    if (sent < msgs.length) c.send(`RETR ${msgs[sent++]}`);
    if (r.body === null) throw new Error(`RETR ${n}: ${r.status}`);
    if (r.body.length !== sizes.get(n)) throw new Error(`RETR ${n}: ${r.body.length} octets, LIST says ${sizes.get(n)}`);
    octets += r.body.length;
  }
  return { octets, ms: performance.now() - t0 };
}
