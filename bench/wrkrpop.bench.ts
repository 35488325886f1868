/**
 * wrkrpop: login-to-+OK time for 1,000 / 10,000 / 100,000-message maildirs
 * (first open: names with S=/W= in new/, no popcache, and again with them
 * already in cur/; later open: popcache and cur/, the first one after the
 * move (it lists cur/ and writes popcache.state), then those that trust
 * popcache.state, with no new mail and with one new message from popmda or
 * from another delivery agent), how long after the first +OK new/ is empty,
 * LIST and UIDL of the whole mailbox, the
 * worker's peak RSS holding each mailbox after LIST and UIDL; RETR of
 * 2,000 x 50 KB and 20 x 10 MB over the worker's socketpair, one command at
 * a time and pipelined; and, with the engine in this process as a worker
 * serving many sessions runs it, the longest event-loop stall while a
 * 100,000-message mailbox opens and is listed and while 10 MB is retrieved.
 * Aims: later open of 100,000 < 0.15 s, first open < 1.8 s, RSS < 100 MB,
 * LIST / UIDL of 100,000 < 25 / 131 ms, no stall over a few tens of ms.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { deliver } from '@popd/store/maildir';
import { Logger } from '@popd/shared/log';
import { STATE_SETTLE_MS } from '@popd/shared/params';
import { emptied } from './wait';
import { serve } from '@popd/wrkrpop/serve';
import type { Worker } from '../test/lib/worker';
import type { Pop3Client } from '../test/lib/pop3';

// Static imports would compile to "../test/lib/...", which does not exist next to bench/dist: load the compiled helpers from test/dist.
const lib = path.join(__dirname, '..', '..', 'test', 'dist', 'lib');
const { addMessages, seedMaildir, chownToMailUser, removeSeeded } = require(path.join(lib, 'maildirs')) as typeof import('../test/lib/maildirs');
const { spawnWorker, start } = require(path.join(lib, 'worker')) as typeof import('../test/lib/worker');
const { Pop3Client: Client } = require(path.join(lib, 'pop3')) as typeof import('../test/lib/pop3');

const memMb = (pid: number, field: 'VmRSS' | 'VmHWM'): number =>
  Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const since = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (secs: number): string => `${(secs * 1000).toFixed(1)} ms`;

/** A warm spare that has loaded its code, as popd keeps one. */
async function spare(): Promise<Worker> {
  const w = spawnWorker();
  await sleep(400);
  return w;
}

/** Seconds from the start message to the greeting. */
async function timedLogin(w: Worker, dir: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  start(w, dir);
  const greeting = await w.pop.line();
  const secs = since(t0);
  if (!greeting.startsWith('+OK')) throw new Error(greeting);
  return secs;
}

/** Seconds for one multi-line command, from sending it to the end of its answer. */
async function timedListing(pop: Pop3Client, cmd: 'LIST' | 'UIDL'): Promise<number> {
  const t0 = process.hrtime.bigint();
  pop.send(cmd);
  const r = await pop.reply(true);
  if (!r.status.startsWith('+OK')) throw new Error(r.status);
  return since(t0);
}

async function quit(w: Worker): Promise<void> {
  await w.pop.cmd('QUIT');
  await w.exited;
  w.io.destroy();
}

/** Seconds from t0 until dir/new holds nothing. */
async function newEmptied(dir: string, t0: bigint): Promise<number> {
  await emptied(path.join(dir, 'new'));
  return since(t0);
}

const BODY = Buffer.from('From: bench@example.org\nSubject: benchmark message\n\n' + 'a line of text in the body of the message\n'.repeat(12));

async function opens(n: number): Promise<void> {
  const s = seedMaildir([]);
  for (let done = 0; done < n; done += 10_000) addMessages(s.dir, Array(Math.min(10_000, n - done)).fill(BODY), { base: 1_600_000_000 + done });
  chownToMailUser(s.dir);
  let w = await spare();
  const t0 = process.hrtime.bigint();
  const first = await timedLogin(w, s.dir);
  // The client's first command, in the session that found everything in new/.
  const firstUidl = await timedListing(w.pop, 'UIDL');
  const emptied = await newEmptied(s.dir, t0);
  await quit(w);
  // The move changed cur/ and new/: the first open after it lists them and, once they have settled, records them.
  await sleep(STATE_SETTLE_MS + 100);
  w = await spare();
  const rescan = await timedLogin(w, s.dir);
  await quit(w);
  const later: number[] = [];
  const list: number[] = [];
  const uidl: number[] = [];
  let rss = 0;
  for (let i = 0; i < 3; i++) {
    w = await spare();
    later.push(await timedLogin(w, s.dir));
    list.push(await timedListing(w.pop, 'LIST'));
    uidl.push(await timedListing(w.pop, 'UIDL'));
    rss = Math.max(rss, memMb(w.child.pid!, 'VmHWM'));
    await quit(w);
  }
  // New mail since the last session: delivered by popmda, which appends its popcache line, or by
  // another delivery agent, which leaves popcache to be reconciled and rewritten. Each time on a
  // mailbox whose cur/ is recorded (the session before moved the last new message to cur/).
  const withNew = async (add: (i: number) => Promise<unknown>): Promise<number> => {
    const t: number[] = [];
    for (let i = 0; i < 3; i++) {
      await sleep(STATE_SETTLE_MS + 100);
      w = await spare();
      await timedLogin(w, s.dir);
      await quit(w);
      await add(i);
      w = await spare();
      t.push(await timedLogin(w, s.dir));
      await quit(w);
    }
    return median(t);
  };
  const popmda = await withNew(async () => {
    const d = await deliver(s.dir, Readable.from([BODY]));
    chownToMailUser(path.join(s.dir, 'new'));
    return d;
  });
  const foreign = await withNew(async (i) => {
    addMessages(s.dir, [BODY], { base: 1_900_000_000 + i });
    // Only what the agent wrote: chowning the maildir would change cur/ too.
    chownToMailUser(path.join(s.dir, 'new'));
  });
  // A maildir brought from another server: names with S=/W= already in cur/, no popcache.
  fs.rmSync(path.join(s.dir, 'popcache'));
  w = await spare();
  const migrated = await timedLogin(w, s.dir);
  await quit(w);
  console.log(
    `${String(n).padStart(6)} messages: first open ${first.toFixed(3)} s (all in new/; new/ empty ${emptied.toFixed(3)} s after login), ${migrated.toFixed(3)} s (all in cur/); ` +
      `later open: the first after the move ${rescan.toFixed(3)} s (lists cur/), then ${median(later).toFixed(3)} s (popcache.state); ` +
      `with 1 new message ${popmda.toFixed(3)} s (popmda), ${foreign.toFixed(3)} s (another agent) (medians of 3); ` +
      `peak RSS after LIST+UIDL ${rss.toFixed(0)} MB`,
  );
  console.log(`${' '.repeat(16)}LIST ${ms(median(list))}, UIDL ${ms(median(uidl))} (medians of 3); UIDL as the first command after the first open ${ms(firstUidl)}`);
  removeSeeded();
}

/** RETR of every message, one command at a time (window 1) or with up to window commands in flight; bytes received. */
async function retrAll(pop: Pop3Client, count: number, window: number): Promise<number> {
  let sent = 0;
  let bytes = 0;
  const more = (): void => {
    let cmds = '';
    while (sent < count && sent - done < window) cmds += `RETR ${++sent}\r\n`;
    if (cmds) pop.sendRaw(cmds);
  };
  let done = 0;
  more();
  while (done < count) {
    const r = await pop.reply(true);
    if (!r.body) throw new Error(r.status);
    bytes += r.body.length;
    done++;
    more();
  }
  return bytes;
}

async function throughput(count: number, body: Buffer): Promise<void> {
  const s = seedMaildir(Array(count).fill(body));
  const w = await spare();
  await timedLogin(w, s.dir);
  // Once for the page cache and the seen flags, then measured.
  await retrAll(w.pop, count, 64);
  const size = body.length >= 1e6 ? `${(body.length / 1e6).toFixed(0)} MB` : `${(body.length / 1000).toFixed(0)} KB`;
  for (const [what, window] of [
    ['one at a time', 1],
    ['64 pipelined', 64],
  ] as const) {
    let best = 0;
    for (let round = 0; round < 2; round++) {
      const t0 = process.hrtime.bigint();
      const bytes = await retrAll(w.pop, count, window);
      best = Math.max(best, bytes / 1e6 / since(t0));
    }
    const perMsg = (best * 1e6) / body.length;
    console.log(`RETR ${count} x ${size} over the socketpair, ${what}: ${best.toFixed(0)} MB/s, ${perMsg.toFixed(perMsg < 100 ? 1 : 0)} msg/s (best of 2, client unstuffing included)`);
  }
  await quit(w);
  removeSeeded();
}

/** The longest gap between the turns of a 1 ms timer while step runs: how long the event loop was held at most. */
async function longestStall(step: () => Promise<unknown>): Promise<string> {
  let last = performance.now();
  let max = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    max = Math.max(max, now - last);
    last = now;
  }, 1);
  const t0 = process.hrtime.bigint();
  await step();
  const took = since(t0);
  clearInterval(tick);
  max = Math.max(max, performance.now() - last);
  return `${max.toFixed(0)} ms (in ${took.toFixed(2)} s)`;
}

/** The engine in this process over a Unix socket pair, as a worker that serves many sessions runs it: the longest stall during each step of two sessions. */
async function stalls(): Promise<void> {
  const s = seedMaildir([]);
  for (let done = 0; done < 100_000; done += 10_000) addMessages(s.dir, Array(10_000).fill(BODY), { base: 1_600_000_000 + done });
  const big = Buffer.from('x'.repeat(99).concat('\n').repeat(100_000));
  addMessages(s.dir, [big], { base: 1_700_000_000 });
  const sockDir = fs.mkdtempSync(path.join(os.tmpdir(), 'popd-bench-'));
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(path.join(sockDir, 'engine.sock'), r));
  const report: string[] = [];
  for (const session of ['first', 'later']) {
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const client = net.connect(path.join(sockDir, 'engine.sock'));
    const io = await accepted;
    const pop = new Client(client);
    let served: Promise<unknown> = Promise.resolve();
    const t0 = process.hrtime.bigint();
    report.push(
      `${session} open ` +
        (await longestStall(async () => {
          served = serve(io, { user: 'bench', maildir: s.dir, idleTimeoutMs: 600_000, log: new Logger(() => undefined) });
          const greeting = await pop.line();
          if (!greeting.startsWith('+OK')) throw new Error(greeting);
        })),
    );
    if (session === 'first') report.push(`until new/ is empty ${await longestStall(() => newEmptied(s.dir, t0))}`);
    else {
      report.push(`LIST ${await longestStall(() => timedListing(pop, 'LIST'))}`, `UIDL ${await longestStall(() => timedListing(pop, 'UIDL'))}`);
      // The 10 MB message was delivered last.
      const retr = await longestStall(async () => {
        pop.send('RETR 100001');
        await pop.reply(true);
      });
      report.push(`RETR of 10 MB ${retr}`);
    }
    await pop.cmd('QUIT');
    await served;
    client.destroy();
  }
  console.log(`longest event-loop stall with the engine in process, 100,000 messages: ${report.join('; ')}`);
  server.close();
  fs.rmSync(sockDir, { recursive: true, force: true });
  removeSeeded();
}

export async function main(): Promise<void> {
  for (const n of [1000, 10_000, 100_000]) await opens(n);
  await throughput(2000, Buffer.from('Subject: throughput\n\n' + 'x'.repeat(99).concat('\n').repeat(500)));
  await throughput(20, Buffer.from('Subject: throughput\n\n' + 'x'.repeat(99).concat('\n').repeat(100_000)));
  await stalls();
}
