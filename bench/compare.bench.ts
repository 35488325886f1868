/**
 * popd against Dovecot 2.3 (Debian's dovecot-pop3d). On a shared, noisy
 * machine only the ratio of two figures taken in the same run means
 * anything: each figure is measured on popd and right after on Dovecot, with
 * the same client (bench/loadclient.ts: Node, TLS 1.3 over loopback), the
 * same users and bcrypt hashes, the same certificate, and the same maildir
 * content (written once by one generator, then copied, so each server renames
 * and indexes its own copy).
 *
 *   npm run bench -- compare                  everything (about 8 minutes)
 *   COMPARE=logins,retr npm run bench -- compare
 *   npm run bench -- compare logins retr      the same
 *
 * Parts: logins (logins/s at 1, 16, 64 clients and bcrypt cost 4 and 10,
 * server CPU per login, login latency), sessions (500 sessions at once),
 * retr, list (1,000 and 10,000 messages), 100k (100,000 messages).
 *
 * Reading the table: popd/Dovecot above 1 means popd is ahead for rates
 * (logins/s, MB/s, msg/s) and behind for times, CPU and memory (ms, s, MiB).
 * Server CPU and memory are those of each server's whole process tree
 * (bench/proctree.ts), the client's own CPU is in the progress lines.
 * Dovecot checks passwd-file bcrypt hashes in its one auth process (one
 * core); popd in a pool of threads: at cost 10 that alone favours popd.
 * Ratios of two runs on the shared machine differed by up to 2x.
 * popd runs with its defaults but -M 1000: its 20 connections per address
 * would refuse most of the load, which all comes from 127.0.0.1. Dovecot runs
 * with its defaults but what bench/dovecot.ts sets (the run prints it).
 * Needs root (Dovecot starts as root to switch to the mail user) and Dovecot.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { DovecotServer, dovecotVersion } from './dovecot';
import * as load from './loadclient';
import { treeCpuSeconds, treePssKiB } from './proctree';
import { pct } from './stats';
import { emptied } from './wait';

// Static imports would compile to "../test/lib/...", which does not exist next to bench/dist: load the compiled helpers from test/dist.
const testLib = (name: string): string => path.join(__dirname, '..', '..', 'test', 'dist', 'lib', name);
const { PopdFixture } = require(testLib('popd')) as typeof import('../test/lib/popd');
const { MAILUSER, isRoot, tmpdir } = require(testLib('util')) as typeof import('../test/lib/util');
const { addMessages, chownToMailUser, wireOctets } = require(testLib('maildirs')) as typeof import('../test/lib/maildirs');

const PARTS = ['logins', 'sessions', 'retr', 'list', '100k'] as const;
type Part = (typeof PARTS)[number];
const isPart = (s: string): s is Part => (PARTS as readonly string[]).includes(s);

const LOGIN_SECONDS = 5;
/** One client at a time gives the latency percentiles: at least this many logins. */
const MIN_SERIAL_LOGINS = 100;
const LOGIN_CLIENTS = [1, 16, 64];
const SESSIONS = 500;
/** Pause before each measurement, and before reading CPU after one: processes of ended sessions exit meanwhile. */
const SETTLE_MS = 1000;
/** Longer than popd's STATE_SETTLE_MS (2 s) and Dovecot's own rule for a maildir changed within the second: the maildirs are at rest. */
const REST_MS = 3000;

interface Server {
  name: 'popd' | 'Dovecot';
  port: number;
  /** The root of its process tree. */
  pid: number;
}

interface Account extends load.Cred {
  hash: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const progress = (s: string): void => console.log(`  ${s}`);
const fmt = (x: number): string => (Number.isInteger(x) || x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const median = (xs: number[]): number => pct(xs, 50);

/** COMPARE=a,b and command-line words that name parts; all parts when none is named. */
function selectedParts(): Set<Part> {
  const fromEnv = (process.env.COMPARE ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = fromEnv.filter((s) => !isPart(s));
  if (unknown.length > 0) throw new Error(`COMPARE: unknown part ${unknown.join(', ')} (parts: ${PARTS.join(', ')})`);
  const named = [...fromEnv, ...process.argv.slice(2)].filter(isPart);
  return new Set(named.length > 0 ? named : PARTS);
}

/** The result table: what | popd | Dovecot | popd/Dovecot. */
class Table {
  private readonly rows: string[][] = [];

  add(what: string, popd: number, dovecot: number, notes: [string, string] = ['', '']): void {
    const ratio = dovecot !== 0 && Number.isFinite(popd / dovecot) ? (popd / dovecot).toFixed(2) : '-';
    this.rows.push([what, fmt(popd) + notes[0], fmt(dovecot) + notes[1], ratio]);
  }

  print(): void {
    const head = ['what', 'popd', 'Dovecot', 'popd/Dovecot'];
    console.log(`\n| ${head.join(' | ')} |\n| ${head.map(() => '---').join(' | ')} |`);
    for (const r of this.rows) console.log(`| ${r.join(' | ')} |`);
  }
}

const errNote = (n: number): string => (n > 0 ? ` (${n} errors)` : '');

/** Users with their bcrypt hashes at one cost. */
function accounts(prefix: string, n: number, cost: number): Account[] {
  return Array.from({ length: n }, (_, i) => {
    const pass = `pw-${prefix}${i}`;
    return { user: `${prefix}${i}`, pass, hash: bcrypt.hashSync(pass, cost) };
  });
}

/** A message of about octets bytes with lines of 76 characters, one of them starting with "." (it goes out dot-stuffed). */
function retrMessage(i: number, octets: number): Buffer {
  const head = `From: bench@example.org\nSubject: retr ${i}\nMessage-ID: <${i}@bench.example.org>\n\n.a line that starts with a dot\n`;
  const line = `${'x'.repeat(75)}\n`;
  return Buffer.from(head + line.repeat(Math.max(0, Math.floor((octets - head.length) / line.length))));
}

/** The message of the LIST/UIDL mailboxes, as bench/wrkrpop.bench.ts uses. */
const SMALL = Buffer.from('From: bench@example.org\nSubject: benchmark message\n\n' + 'a line of text in the body of the message\n'.repeat(12));

/**
 * Writes count messages (make(i)) into the first maildir, in batches, then
 * copies it into the others: the same names, sizes and bytes for every
 * server. Returns the messages' wire octets, sorted.
 */
function fillMaildirs(dirs: string[], count: number, make: (i: number) => Buffer, batch: number): number[] {
  const [first, ...copies] = dirs;
  for (const d of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(first, d), { recursive: true, mode: 0o700 });
  const octets: number[] = [];
  for (let done = 0; done < count; done += batch) {
    const bodies = Array.from({ length: Math.min(batch, count - done) }, (_, i) => make(done + i));
    addMessages(first, bodies, { base: 1_600_000_000 + done });
    octets.push(...bodies.map(wireOctets));
  }
  chownToMailUser(first);
  for (const c of copies) {
    const r = spawnSync('cp', ['-a', `${first}/.`, c], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cp: ${r.stderr}`);
  }
  return octets.sort((a, b) => a - b);
}

/** Each server's CPU seconds (whole tree) and the client's over run(). */
async function measured<T>(s: Server, run: () => Promise<T>): Promise<{ r: T; cpu: number; clientCpu: number }> {
  await sleep(SETTLE_MS);
  const cpu0 = treeCpuSeconds(s.pid);
  const u0 = process.cpuUsage();
  const r = await run();
  await sleep(SETTLE_MS);
  const u = process.cpuUsage(u0);
  return { r, cpu: treeCpuSeconds(s.pid) - cpu0, clientCpu: (u.user + u.system) / 1e6 };
}

/**
 * Logins/s at each client count, in two halves per server in the order popd,
 * Dovecot, Dovecot, popd: a change in the machine's load over the run then
 * falls on both alike.
 */
async function logins(servers: Server[], table: Table, sets: Array<{ cost: number; creds: Account[] }>): Promise<void> {
  const [popd, dovecot] = servers;
  for (const { cost, creds } of sets) {
    for (const s of servers) await load.eachOnce(s.port, creds, 16);
    for (const clients of LOGIN_CLIENTS) {
      const sum = new Map(servers.map((s) => [s, { logins: 0, errors: 0, firstError: '', latencies: [] as number[], seconds: 0, cpu: 0, clientCpu: 0 }]));
      for (const s of [popd, dovecot, dovecot, popd]) {
        const m = await measured(s, () => load.loginLoad(s.port, creds, clients, LOGIN_SECONDS / 2, clients === 1 ? MIN_SERIAL_LOGINS / 2 : 0));
        const t = sum.get(s)!;
        t.logins += m.r.logins;
        t.errors += m.r.errors;
        t.firstError ||= m.r.firstError;
        t.latencies.push(...m.r.latencies);
        t.seconds += m.r.seconds;
        t.cpu += m.cpu;
        t.clientCpu += m.clientCpu;
      }
      for (const s of servers) {
        const t = sum.get(s)!;
        progress(
          `${s.name}, cost ${cost}, ${clients} client${clients > 1 ? 's' : ''}: ${t.logins} logins in ${t.seconds.toFixed(1)} s, ${t.errors} errors${t.firstError ? ` (first: ${t.firstError})` : ''}; ` +
            `server CPU ${t.cpu.toFixed(2)} s, client CPU ${t.clientCpu.toFixed(2)} s`,
        );
      }
      const [p, d] = [sum.get(popd)!, sum.get(dovecot)!];
      table.add(`logins/s, bcrypt cost ${cost}, ${clients} client${clients > 1 ? 's' : ''}`, p.logins / p.seconds, d.logins / d.seconds, [errNote(p.errors), errNote(d.errors)]);
      if (clients === 16) table.add(`server CPU ms per login, cost ${cost}, 16 clients`, (p.cpu * 1000) / p.logins, (d.cpu * 1000) / d.logins);
      if (clients === 1) {
        table.add(`login p50 ms (connect to PASS answered), cost ${cost}, one at a time`, pct(p.latencies, 50), pct(d.latencies, 50));
        table.add(`login p99 ms, cost ${cost}, one at a time`, pct(p.latencies, 99), pct(d.latencies, 99));
      }
    }
  }
}

async function sessions(servers: Server[], table: Table, creds: Account[]): Promise<void> {
  // First logins create index files (Dovecot) and caches (popd): not what this part measures.
  for (const s of servers) await load.eachOnce(s.port, creds, 16);
  const res: Array<{ open: number; errors: number; allIn: number; total: number; pssIdle: number; pss: number }> = [];
  for (const s of servers) {
    await sleep(SETTLE_MS);
    const pssIdle = treePssKiB(s.pid) / 1024;
    const t0 = performance.now();
    const opened = await Promise.allSettled(creds.map((c) => load.session(s.port, c)));
    const allIn = (performance.now() - t0) / 1000;
    const pss = treePssKiB(s.pid) / 1024;
    const open = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    const quits = await Promise.allSettled(open.map(load.quit));
    const total = (performance.now() - t0) / 1000;
    const failed = [...opened, ...quits].flatMap((o) => (o.status === 'rejected' ? [(o.reason as Error).message] : []));
    progress(
      `${s.name}: ${open.length} of ${creds.length} logged in after ${allIn.toFixed(2)} s, all QUIT answered after ${total.toFixed(2)} s, ${failed.length} errors${failed.length ? ` (first: ${failed[0]})` : ''}; ` +
        `PSS ${pssIdle.toFixed(0)} MiB idle, ${pss.toFixed(0)} MiB with the sessions`,
    );
    res.push({ open: open.length, errors: failed.length, allIn, total, pssIdle, pss });
  }
  const [p, d] = res;
  const inNote = (r: (typeof res)[number]): string => (r.open < creds.length ? ` (${r.open} logged in)` : '');
  table.add(`${SESSIONS} sessions at once (cost 4): errors`, p.errors, d.errors);
  table.add(`${SESSIONS} sessions: s until every login answered`, p.allIn, d.allIn);
  table.add(`${SESSIONS} sessions: s until every QUIT answered`, p.total, d.total);
  table.add('server PSS MiB, idle', p.pssIdle, d.pssIdle);
  table.add(`server PSS MiB, ${SESSIONS} sessions logged in`, p.pss, d.pss, [inNote(p), inNote(d)]);
}

/** A session's LIST, checked against the generator's sizes. */
async function checkedList(c: load.Pop3Client, expected: number[], who: string): Promise<Map<number, number>> {
  const sizes = await load.list(c);
  const got = [...sizes.values()].sort((a, b) => a - b);
  if (got.length !== expected.length || got.some((x, i) => x !== expected[i])) throw new Error(`${who}: LIST sizes differ from the messages' wire octets`);
  return sizes;
}

type Transfer = { octets: number; ms: number };

/**
 * The client (Node, like popd) runs its code slowly until V8 has optimized
 * it, and the RETR figures are taken server after server, popd first: popd
 * met a colder client (its 64-pipelined figure, median of 5 runs: 257 MB/s
 * without this warm-up, 284 with it; Dovecot's, measured after it, 153 and
 * 146). So before anything is measured the client fetches a mailbox of its
 * own from Dovecot, one message at a time and then pipelined. Dovecot starts
 * a new pop3 process for every session and compiles nothing, so its measured
 * sessions are as before; popd's worker is still a fresh spare.
 */
async function warmClient(dovecot: Server, m: { cred: Account; octets: number[] }): Promise<void> {
  for (const window of [1, 64]) {
    const c = await load.session(dovecot.port, m.cred);
    await load.retrAll(c, await checkedList(c, m.octets, dovecot.name), window);
    await load.quit(c);
  }
}

/** Parts of each RETR figure per server, taken in turns (see retr). */
const RETR_PARTS = 4;

/**
 * RETR figures in RETR_PARTS parts per server, taken in the order popd,
 * Dovecot, Dovecot, popd, popd, Dovecot, ... (as logins, in halves): each
 * part fetches its share of the mailbox in a session of its own, and a
 * change in the machine's load over the run (on this shared machine, loads
 * come and go within seconds) falls on both servers alike. popd's first
 * part meets a fresh worker (a spare, its code not yet optimized by V8).
 */
async function retr(servers: Server[], table: Table, small: { cred: Account; octets: number[] }, big: { cred: Account; octets: number[] }): Promise<void> {
  const [popd, dovecot] = servers;
  const mbs = (r: Transfer): number => r.octets / 1e6 / (r.ms / 1000);
  /** All parts of one figure, on each server; each part's octets checked against LIST. */
  const figure = async (m: typeof small, window: number, what: string): Promise<Map<Server, Transfer & { cpu: number; clientCpu: number }>> => {
    const sum = new Map(servers.map((s) => [s, { octets: 0, ms: 0, cpu: 0, clientCpu: 0 }]));
    const done = new Map(servers.map((s) => [s, 0]));
    const order = Array.from({ length: RETR_PARTS }, (_, i) => (i % 2 === 0 ? [popd, dovecot] : [dovecot, popd])).flat();
    for (const s of order) {
      const part = done.get(s)!;
      done.set(s, part + 1);
      const c = await load.session(s.port, m.cred);
      const sizes = [...(await checkedList(c, m.octets, s.name))];
      const share = Math.ceil(sizes.length / RETR_PARTS);
      const t = await measured(s, () => load.retrAll(c, new Map(sizes.slice(part * share, (part + 1) * share)), window));
      await load.quit(c);
      const a = sum.get(s)!;
      a.octets += t.r.octets;
      a.ms += t.r.ms;
      a.cpu += t.cpu;
      a.clientCpu += t.clientCpu;
    }
    for (const s of servers) {
      const a = sum.get(s)!;
      progress(`${s.name}: RETR ${what}: ${mbs(a).toFixed(0)} MB/s; server CPU ${a.cpu.toFixed(2)} s, client CPU ${a.clientCpu.toFixed(2)} s (octets checked against LIST)`);
    }
    return sum;
  };
  const serial = await figure(small, 1, `${small.octets.length} x 50 KB one at a time`);
  const piped = await figure(small, 64, `${small.octets.length} x 50 KB, 64 pipelined`);
  const bigs = await figure(big, 64, `${big.octets.length} x 10 MB pipelined`);
  const res = servers.map((s) => ({ serial: serial.get(s)!, piped: piped.get(s)!, big: bigs.get(s)! }));
  const msgs = (r: Transfer): number => small.octets.length / (r.ms / 1000);
  const [p, d] = res;
  table.add(`RETR ${small.octets.length} x 50 KB one at a time, MB/s`, mbs(p.serial), mbs(d.serial));
  table.add(`RETR ${small.octets.length} x 50 KB one at a time, msg/s`, msgs(p.serial), msgs(d.serial));
  table.add(`RETR ${small.octets.length} x 50 KB 64 pipelined, MB/s`, mbs(p.piped), mbs(d.piped));
  table.add(`RETR ${small.octets.length} x 50 KB 64 pipelined, msg/s`, msgs(p.piped), msgs(d.piped));
  table.add(`RETR ${big.octets.length} x 10 MB pipelined, MB/s`, mbs(p.big), mbs(d.big));
}

/**
 * A mailbox of n messages, all in new/: the first open (PASS to STAT
 * answered), then reps times a session with LIST then UIDL and a session with
 * UIDL as its first command. Later opens are of a mailbox at rest: Dovecot
 * moved every message to cur/ before its first +OK, popd moves them after
 * its +OK while the client is silent, so popd's first session stays open,
 * silent, until popd's new/ (popdNew) is empty; then both servers' maildirs
 * are left alone for REST_MS. The first later open is also shown apart (it
 * may list cur/ again: popd's record of a listing waits for cur/ to settle).
 */
async function mailbox(servers: Server[], table: Table, cred: Account, n: number, reps: number, popdNew: string): Promise<void> {
  const res: Array<{ first: number; rescan: number; later: number; list: number; uidl: number; firstUidl: number }> = [];
  const opened = async (s: Server): Promise<{ c: load.Pop3Client; ms: number }> => {
    const o = await load.timedOpen(s.port, cred);
    if (o.count !== n) throw new Error(`${s.name}: STAT says ${o.count} messages, not ${n}`);
    return o;
  };
  const lines = async (c: load.Pop3Client, cmd: string): Promise<number> => {
    const r = await load.timedMulti(c, cmd);
    if (r.lines.length !== n) throw new Error(`${cmd}: ${r.lines.length} lines, not ${n}`);
    return r.ms;
  };
  for (const s of servers) {
    await sleep(SETTLE_MS);
    const f = await opened(s);
    if (s.name === 'popd') await emptied(popdNew);
    await load.quit(f.c);
    await sleep(REST_MS);
    const later: number[] = [];
    const list: number[] = [];
    const uidl: number[] = [];
    const firstUidl: number[] = [];
    for (let i = 0; i < reps; i++) {
      const a = await opened(s);
      list.push(await lines(a.c, 'LIST'));
      uidl.push(await lines(a.c, 'UIDL'));
      await load.quit(a.c);
      const b = await opened(s);
      firstUidl.push(await lines(b.c, 'UIDL'));
      await load.quit(b.c);
      later.push(a.ms, b.ms);
    }
    const r = { first: f.ms, rescan: later[0], later: median(later), list: median(list), uidl: median(uidl), firstUidl: median(firstUidl) };
    progress(
      `${s.name}, ${n} messages: first open ${fmt(r.first)} ms, first later open ${fmt(r.rescan)} ms, later open ${fmt(r.later)} ms (${later.map(fmt).join(', ')}), ` +
        `LIST ${fmt(r.list)} ms, UIDL ${fmt(r.uidl)} ms, first UIDL ${fmt(r.firstUidl)} ms (medians of ${reps})`,
    );
    res.push(r);
  }
  const [p, d] = res;
  const count = n.toLocaleString('en');
  table.add(`login (PASS) to STAT answered ms, ${count} messages, first open (all in new/)`, p.first, d.first);
  table.add(`login to STAT ms, ${count} messages, first later open (after the move, at rest)`, p.rescan, d.rescan);
  table.add(`login to STAT ms, ${count} messages, later open`, p.later, d.later);
  table.add(`LIST ms, ${count} messages`, p.list, d.list);
  table.add(`UIDL ms (after LIST), ${count} messages`, p.uidl, d.uidl);
  table.add(`first UIDL of a fresh session ms, ${count} messages`, p.firstUidl, d.firstUidl);
}

export async function main(): Promise<void> {
  const version = dovecotVersion();
  if (version === null || !isRoot) {
    console.error(
      version === null
        ? 'compare: Dovecot is not installed. As root: apt-get install -y dovecot-pop3d (then keep the system Dovecot stopped: it would listen on 110 and 995).'
        : 'compare: needs root (Dovecot starts as root to switch to the mail user).',
    );
    process.exitCode = 1;
    return;
  }
  const parts = selectedParts();
  const t0 = performance.now();
  console.log(`parts: ${[...parts].join(', ')}; Node ${process.version}, Dovecot ${version}`);

  progress('hashing passwords (bcryptjs)');
  const cost4 = accounts('c4u', parts.has('sessions') ? SESSIONS : parts.has('logins') ? Math.max(...LOGIN_CLIENTS) : 0, 4);
  const cost10 = accounts('c10u', parts.has('logins') ? Math.max(...LOGIN_CLIENTS) : 0, 10);
  const boxes = {
    retr50k: { ...accounts('retr50k', 1, 4)[0], count: 2000, make: (i: number) => retrMessage(i, 50_000), batch: 200, part: 'retr' as Part },
    retr10m: { ...accounts('retr10m', 1, 4)[0], count: 20, make: (i: number) => retrMessage(i, 10_000_000), batch: 1, part: 'retr' as Part },
    warm: { ...accounts('warm', 1, 4)[0], count: 2000, make: (i: number) => retrMessage(i, 50_000), batch: 200, part: 'retr' as Part },
    m1000: { ...accounts('m1000x', 1, 4)[0], count: 1000, make: () => SMALL, batch: 10_000, part: 'list' as Part },
    m10000: { ...accounts('m10000x', 1, 4)[0], count: 10_000, make: () => SMALL, batch: 10_000, part: 'list' as Part },
    m100000: { ...accounts('m100000x', 1, 4)[0], count: 100_000, make: () => SMALL, batch: 10_000, part: '100k' as Part },
  };
  const mailboxes = Object.values(boxes).filter((b) => parts.has(b.part));
  const all = [...cost4, ...cost10, ...mailboxes];

  // POPD_ARGS adds popd options, e.g. POPD_ARGS='-W session' to compare the per-session mode.
  const extra = (process.env.POPD_ARGS ?? '').split(' ').filter((a) => a !== '');
  const popd = await PopdFixture.start({ accounts: all, verbose: false, args: ['-M', '1000', ...extra] });
  const ddir = tmpdir('dovecot-bench-');
  let dovecot: DovecotServer | null = null;
  try {
    fs.mkdirSync(path.join(ddir, 'state'));
    const mailRoot = path.join(ddir, 'mail');
    fs.mkdirSync(mailRoot);
    const octets = new Map<string, number[]>();
    progress(`writing maildirs (${mailboxes.map((b) => `${b.user}: ${b.count}`).join(', ') || 'empty ones only'})`);
    for (const a of all) {
      const box = mailboxes.find((b) => b.user === a.user);
      const dirs = [popd.maildir(a.user), path.join(mailRoot, a.user)];
      octets.set(a.user, fillMaildirs(dirs, box?.count ?? 0, box?.make ?? (() => SMALL), box?.batch ?? 1));
    }
    chownToMailUser(mailRoot);
    dovecot = await DovecotServer.start({ accounts: all, uid: MAILUSER.uid, gid: MAILUSER.gid, mailRoot, cert: popd.files.cert, key: popd.files.key, dir: ddir });
    console.log(`Dovecot configuration (${path.join(ddir, 'dovecot.conf')}):\n${dovecot.config.replace(/^/gm, '    ')}`);
    const servers: Server[] = [
      { name: 'popd', port: popd.tlsPort, pid: popd.proc.pid! },
      { name: 'Dovecot', port: dovecot.port, pid: dovecot.pid },
    ];
    for (const s of servers) progress(`${s.name}: ${await load.tlsParams(s.port)}`);
    progress(`ready after ${((performance.now() - t0) / 1000).toFixed(0)} s`);

    const table = new Table();
    const withOctets = (a: Account): { cred: Account; octets: number[] } => ({ cred: a, octets: octets.get(a.user)! });
    if (parts.has('logins')) {
      progress('logins');
      await logins(servers, table, [
        { cost: 4, creds: cost4.slice(0, Math.max(...LOGIN_CLIENTS)) },
        { cost: 10, creds: cost10 },
      ]);
    }
    if (parts.has('sessions')) {
      progress(`${SESSIONS} sessions at once`);
      await sessions(servers, table, cost4);
    }
    if (parts.has('retr')) {
      progress(`RETR (first the client fetches ${boxes.warm.count} messages from Dovecot twice, unmeasured: see warmClient)`);
      await warmClient(servers[1], withOctets(boxes.warm));
      await retr(servers, table, withOctets(boxes.retr50k), withOctets(boxes.retr10m));
    }
    if (parts.has('list')) {
      progress('LIST and UIDL, 1,000 and 10,000 messages');
      await mailbox(servers, table, boxes.m1000, 1000, 5, path.join(popd.maildir(boxes.m1000.user), 'new'));
      await mailbox(servers, table, boxes.m10000, 10_000, 5, path.join(popd.maildir(boxes.m10000.user), 'new'));
    }
    if (parts.has('100k')) {
      progress('LIST and UIDL, 100,000 messages');
      await mailbox(servers, table, boxes.m100000, 100_000, 3, path.join(popd.maildir(boxes.m100000.user), 'new'));
    }
    table.print();
    console.log(`\n(${((performance.now() - t0) / 1000).toFixed(0)} s in all)`);
  } finally {
    await popd.stop();
    if (dovecot !== null) {
      await dovecot.stop();
      const problems = dovecot.problems();
      if (problems.length > 0) console.log(`Dovecot logged:\n${problems.map((l) => `    ${l}`).join('\n')}`);
    }
    fs.rmSync(popd.dir, { recursive: true, force: true });
    fs.rmSync(ddir, { recursive: true, force: true });
  }
}
