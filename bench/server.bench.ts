/**
 * popd end to end: login latency (TCP connect to the +OK after PASS) over
 * 200 sequential logins at bcrypt cost 10, and its part that is not bcrypt;
 * logins per second with 20 concurrent clients; RETR throughput over TLS;
 * resident memory of popd, authpop and one idle session.
 */
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import bcrypt from 'bcryptjs';
import { pct } from './stats';

// Static imports would compile to "../test/lib/...", which does not exist next to bench/dist: load the compiled helpers from test/dist.
const testLib = (name: string): string => path.join(__dirname, '..', '..', 'test', 'dist', 'lib', name);
const { PopdFixture } = require(testLib('popd')) as typeof import('../test/lib/popd');
const { connectTls, login } = require(testLib('pop3tls')) as typeof import('../test/lib/pop3tls');
type Fixture = import('../test/lib/popd').PopdFixture;

/** Users for the login runs; two more: one with a big message for RETR, one for the idle session. */
const USERS = 40;
const users = Array.from({ length: USERS + 2 }, (_, i) => ({ user: `u${i}`, pass: `pw-${i}` }));
const [bigUser, idleUser] = [users[USERS], users[USERS + 1]];

const ms = (x: number): string => `${x.toFixed(1)} ms`;

/** One login and QUIT; the time from connect to the answer to PASS. */
async function oneLogin(port: number, user: string, pass: string): Promise<{ ms: number; ok: boolean }> {
  const t0 = performance.now();
  const c = await connectTls(port);
  if (!(await c.line()).startsWith('+OK')) {
    await c.rest();
    return { ms: performance.now() - t0, ok: false };
  }
  const answer = await login(c, user, pass);
  const t = performance.now() - t0;
  if (answer.startsWith('+OK')) await c.cmd('QUIT');
  await c.rest();
  return { ms: t, ok: answer.startsWith('+OK') };
}

/** n logins one after the other, with pauseMs between them (0: back to back). */
async function sequential(p: Fixture, n: number, pauseMs: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    const u = users[i % USERS];
    const r = await oneLogin(p.tlsPort, u.user, u.pass);
    if (!r.ok) throw new Error(`login ${u.user} failed`);
    times.push(r.ms);
  }
  return times;
}

async function concurrent(p: Fixture, clients: number, seconds: number): Promise<{ logins: number; refused: number }> {
  const deadline = performance.now() + seconds * 1000;
  let logins = 0;
  let refused = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, k) => {
      // Two users per client, alternating, so that a worker still exiting is never in the way.
      for (let i = 0; performance.now() < deadline; i++) {
        const u = users[(k * 2 + (i % 2)) % USERS];
        const r = await oneLogin(p.tlsPort, u.user, u.pass);
        if (r.ok) logins++;
        else refused++;
      }
    }),
  );
  return { logins, refused };
}

/** RETR of one big message over TLS, counting raw bytes until the terminator. */
async function retr(port: number, user: string, pass: string): Promise<{ bytes: number; ms: number }> {
  const c = await connectTls(port);
  await c.line();
  if (!(await login(c, user, pass)).startsWith('+OK')) throw new Error('login failed');
  const sock = c.io as tls.TLSSocket;
  sock.removeAllListeners('readable');
  sock.removeAllListeners('end');
  return new Promise((resolve) => {
    let bytes = 0;
    let tail = Buffer.alloc(0);
    const t0 = performance.now();
    sock.on('data', (b: Buffer) => {
      bytes += b.length;
      tail = Buffer.concat([tail, b]).subarray(-5);
      if (tail.toString('latin1') === '\r\n.\r\n') {
        const t = performance.now() - t0;
        sock.destroy();
        resolve({ bytes, ms: t });
      }
    });
    sock.write('RETR 1\r\n');
  });
}

const rssKiB = (pid: number): number => Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

function childPids(pid: number): Array<{ pid: number; cmd: string }> {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .flatMap((d) => {
      try {
        const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return ppid === pid ? [{ pid: Number(d), cmd: fs.readFileSync(`/proc/${d}/cmdline`, 'utf8') }] : [];
      } catch {
        return [];
      }
    });
}

export async function main(): Promise<void> {
  const bcryptTimes: number[] = [];
  const h = bcrypt.hashSync('x', 10);
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    await bcrypt.compare('y', h);
    bcryptTimes.push(performance.now() - t0);
  }
  console.log(`bcryptjs cost 10, one check (async, in this process): p50 ${ms(pct(bcryptTimes, 50))}`);

  const big = 'From: bench@example.org\nSubject: big\n\n' + (`${'x'.repeat(76)}\n`).repeat(400_000);
  for (const cost of [10, 4]) {
    const p = await PopdFixture.start({ accounts: users.map((u, i) => ({ ...u, messages: i === USERS && cost === 10 ? [big] : [] })), cost, args: ['-M', '100'] });
    try {
      await sequential(p, 10, 0); // warm up
      // Paced, the warm spare worker has started before the next login; back to back, a login may wait for its Node start-up.
      for (const pause of [100, 0]) {
        const seq = await sequential(p, 200, pause);
        const how = pause > 0 ? `${pause} ms apart` : 'back to back';
        console.log(`login latency, 200 sequential logins ${how}, bcrypt cost ${cost}: p50 ${ms(pct(seq, 50))}, p99 ${ms(pct(seq, 99))}`);
        if (cost === 10) console.log(`  not bcrypt (p50 minus the p50 of one cost-10 check): ${ms(pct(seq, 50) - pct(bcryptTimes, 50))}`);
      }
      if (cost === 4) {
        console.log('  (at cost 4 a bcrypt check takes about 1 ms: these are the parts of a login that are not bcrypt)');
        continue;
      }
      const conc = await concurrent(p, 20, 10);
      console.log(`logins/s with 20 concurrent clients, cost 10: ${(conc.logins / 10).toFixed(1)} (${conc.refused} refused)`);
      const r = await retr(p.tlsPort, bigUser.user, bigUser.pass);
      console.log(`RETR over TLS: ${(r.bytes / 1e6).toFixed(1)} MB in ${ms(r.ms)} = ${(r.bytes / 1e6 / (r.ms / 1000)).toFixed(0)} MB/s`);
      // Memory with one idle session.
      const c = await connectTls(p.tlsPort);
      await c.line();
      await login(c, idleUser.user, idleUser.pass);
      await c.cmd('STAT');
      const last = p.log.filter((l) => l.includes(`session for ${idleUser.user}: wrkrpop[`)).pop()!;
      const worker = Number(/wrkrpop\[(\d+)\]/.exec(last)![1]);
      const authpop = childPids(p.proc.pid!).find((x) => x.cmd.includes('authpop'))!;
      console.log(`RSS: popd ${(rssKiB(p.proc.pid!) / 1024).toFixed(1)} MiB, authpop ${(rssKiB(authpop.pid) / 1024).toFixed(1)} MiB, one idle session (wrkrpop) ${(rssKiB(worker) / 1024).toFixed(1)} MiB`);
      await c.cmd('QUIT');
    } finally {
      await p.stop();
    }
  }
}
