/**
 * wrkrpop: login-to-+OK time for 1,000 / 10,000 / 100,000-message maildirs
 * (first open: names with S=/W= in new/, no popcache, and again with them
 * already in cur/; later open: popcache and cur/, with no new mail and with
 * one new message from popmda or from another delivery agent), the worker's
 * peak RSS holding each mailbox after LIST and UIDL, and RETR throughput of
 * 2,000 x 50 KB over the socketpair.
 * Aims: later open of 100,000 < 0.5 s, first open < 2 s, RSS < 100 MB.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { deliver } from '@popd/shared/maildir';
import type { Worker } from '../test/lib/worker';

// Static imports would compile to "../test/lib/...", which does not exist next to bench/dist: load the compiled helpers from test/dist.
const lib = path.join(__dirname, '..', '..', 'test', 'dist', 'lib');
const { addMessages, seedMaildir, chownToMailUser, removeSeeded } = require(path.join(lib, 'maildirs')) as typeof import('../test/lib/maildirs');
const { spawnWorker, start } = require(path.join(lib, 'worker')) as typeof import('../test/lib/worker');

const memMb = (pid: number, field: 'VmRSS' | 'VmHWM'): number =>
  Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (!greeting.startsWith('+OK')) throw new Error(greeting);
  return secs;
}

async function listAll(w: Worker): Promise<void> {
  for (const c of ['LIST', 'UIDL']) {
    w.pop.send(c);
    await w.pop.reply(true);
  }
}

async function quit(w: Worker): Promise<void> {
  await w.pop.cmd('QUIT');
  await w.exited;
  w.io.destroy();
}

async function opens(n: number): Promise<void> {
  const body = Buffer.from('From: bench@example.org\nSubject: benchmark message\n\n' + 'a line of text in the body of the message\n'.repeat(12));
  const s = seedMaildir([]);
  for (let done = 0; done < n; done += 10_000) addMessages(s.dir, Array(Math.min(10_000, n - done)).fill(body), { base: 1_600_000_000 + done });
  chownToMailUser(s.dir);
  let w = await spare();
  const first = await timedLogin(w, s.dir);
  await quit(w);
  const later: number[] = [];
  let rss = 0;
  for (let i = 0; i < 3; i++) {
    w = await spare();
    later.push(await timedLogin(w, s.dir));
    await listAll(w);
    rss = Math.max(rss, memMb(w.child.pid!, 'VmHWM'));
    await quit(w);
  }
  later.sort((a, b) => a - b);
  // New mail since the last session: delivered by popmda, which appends its popcache line, or by
  // another delivery agent, which leaves popcache to be reconciled and rewritten.
  const withNew = async (add: (i: number) => Promise<unknown>): Promise<number> => {
    const t: number[] = [];
    for (let i = 0; i < 3; i++) {
      await add(i);
      chownToMailUser(s.dir);
      w = await spare();
      t.push(await timedLogin(w, s.dir));
      await quit(w);
    }
    return t.sort((a, b) => a - b)[1];
  };
  const popmda = await withNew(() => deliver(s.dir, Readable.from([body])));
  const foreign = await withNew(async (i) => addMessages(s.dir, [body], { base: 1_900_000_000 + i }));
  // A maildir brought from another server: names with S=/W= already in cur/, no popcache.
  fs.rmSync(path.join(s.dir, 'popcache'));
  w = await spare();
  const migrated = await timedLogin(w, s.dir);
  await quit(w);
  console.log(
    `${String(n).padStart(6)} messages: first open ${first.toFixed(3)} s (all in new/), ${migrated.toFixed(3)} s (all in cur/); ` +
      `later open ${later[1].toFixed(3)} s; with 1 new message ${popmda.toFixed(3)} s (popmda), ${foreign.toFixed(3)} s (another agent) (medians of 3); ` +
      `peak RSS after LIST+UIDL ${rss.toFixed(0)} MB`,
  );
  removeSeeded();
}

async function throughput(): Promise<void> {
  const count = 2000;
  const body = Buffer.from('Subject: throughput\n\n' + 'x'.repeat(99).concat('\n').repeat(500));
  const s = seedMaildir(Array(count).fill(body));
  const w = await spare();
  await timedLogin(w, s.dir);
  // Once for the page cache and the seen flags, then measured.
  let best = 0;
  for (let round = 0; round < 3; round++) {
    const t0 = process.hrtime.bigint();
    w.pop.sendRaw(Array.from({ length: count }, (_, i) => `RETR ${i + 1}\r\n`).join(''));
    let bytes = 0;
    for (let i = 0; i < count; i++) bytes += (await w.pop.reply(true)).body!.length;
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    if (round > 0) best = Math.max(best, bytes / 1e6 / secs);
  }
  console.log(`RETR ${count} x ${(body.length / 1000).toFixed(0)} KB over the socketpair: ${best.toFixed(0)} MB/s (best of 2, client unstuffing included)`);
  await quit(w);
  removeSeeded();
}

export async function main(): Promise<void> {
  for (const n of [1000, 10_000, 100_000]) await opens(n);
  await throughput();
}
