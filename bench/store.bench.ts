/**
 * The maildir store: delivery throughput through the popmda command and
 * through the in-process deliver(), and the time openMailbox takes on a
 * 100,000-message maildir with a popcache, without one, and without one and
 * without sizes in the names (every file read).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { deliver, openMailbox } from '@popd/store/maildir';
import { wireSizeOf } from '@popd/store/wire';
import { newBaseName, withSizes, wallMicros } from '@popd/store/uniquename';

// A static import would compile to "../test/lib/util", which does not exist next to bench/dist: load the compiled helpers from test/dist.
const { BIN, run, tmpdir } = require(path.join(__dirname, '..', '..', 'test', 'dist', 'lib', 'util')) as typeof import('../test/lib/util');

const DELIVERIES = 2000;
const PARALLEL = 4;
const MAILBOX = 100_000;

/** A plausible 2 KB message, LF line endings, different per index. */
function message(i: number): Buffer {
  const body = Array.from({ length: 30 }, (_, l) => `line ${l} of message ${i}: the quick brown fox jumps over the lazy dog`).join('\n');
  return Buffer.from(`From: sender@example.org\nTo: user@example.net\nSubject: bench ${i}\nMessage-ID: <${i}@bench>\n\n${body}\n`);
}

function rate(n: number, ms: number): string {
  return `${n} in ${(ms / 1000).toFixed(2)} s = ${((n * 1000) / ms).toFixed(0)} messages/s`;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

/** Runs job(0..n-1) with PARALLEL in flight; returns the elapsed milliseconds. */
async function parallel(n: number, job: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await job(next++);
  };
  return (await timed(() => Promise.all(Array.from({ length: PARALLEL }, worker)))).ms;
}

async function viaCommand(): Promise<void> {
  const md = path.join(tmpdir('popd-bench-'), 'Maildir');
  const ms = await parallel(DELIVERIES, async (i) => {
    const r = await run(BIN.popmda, ['-m', md], { input: message(i) });
    if (r.status !== 0) throw new Error(`popmda exited ${r.status}: ${r.stderr}`);
  });
  check(md, DELIVERIES);
  console.log(`popmda command, ${PARALLEL} processes at a time: ${rate(DELIVERIES, ms)}`);
  fs.rmSync(path.dirname(md), { recursive: true, force: true });
  // What the command costs before it does anything: starting Node itself.
  const bare = await parallel(DELIVERIES / 4, async () => {
    await run(process.execPath, ['-e', '0']);
  });
  console.log(`(for scale: bare "node -e 0", ${PARALLEL} at a time: ${rate(DELIVERIES / 4, bare)}; ${os.cpus().length} CPUs)`);
}

async function inProcess(): Promise<void> {
  const md = path.join(tmpdir('popd-bench-'), 'Maildir');
  const { ms } = await timed(async () => {
    for (let i = 0; i < DELIVERIES; i++) await deliver(md, Readable.from([message(i)]));
  });
  check(md, DELIVERIES);
  console.log(`deliver() in process, one at a time:  ${rate(DELIVERIES, ms)}`);
  fs.rmSync(path.dirname(md), { recursive: true, force: true });
}

function check(md: string, n: number): void {
  const files = fs.readdirSync(path.join(md, 'new')).length;
  const lines = fs.readFileSync(path.join(md, 'popcache'), 'latin1').split('\n').length - 1;
  if (files !== n || lines !== n) throw new Error(`expected ${n} messages and popcache lines, found ${files} and ${lines}`);
}

/** Writes MAILBOX messages straight into cur/ with maildir++ names (sizes in the names when withSizes). */
function makeMailbox(md: string): string[] {
  for (const d of ['', 'cur', 'new', 'tmp']) fs.mkdirSync(path.join(md, d), { mode: 0o700 });
  const names: string[] = [];
  let micros = wallMicros() - MAILBOX * 1000;
  for (let i = 0; i < MAILBOX; i++) {
    const data = message(i);
    const name = withSizes(newBaseName((micros += 1000)), data.length, wireSizeOf(data));
    fs.writeFileSync(path.join(md, 'cur', `${name}:2,`), data);
    names.push(name);
  }
  return names;
}

async function openLarge(): Promise<void> {
  const md = path.join(tmpdir('popd-bench-'), 'Maildir');
  const made = await timed(async () => makeMailbox(md));
  console.log(`(made a ${MAILBOX}-message maildir in ${(made.ms / 1000).toFixed(1)} s)`);
  const report = async (label: string): Promise<void> => {
    const { ms, value } = await timed(() => openMailbox(md));
    if (value.messages.length !== MAILBOX) throw new Error(`${label}: ${value.messages.length} messages`);
    console.log(`openMailbox, ${MAILBOX} messages, ${label}: ${ms.toFixed(0)} ms (files read: ${value.counted}, popcache rewritten: ${value.rewritten})`);
  };
  await report('no popcache, sizes from the names');
  await report('with a valid popcache');
  await report('with a valid popcache, again');
  // Strip S= and W= from every name: with no popcache, every file must be read and counted.
  for (const name of made.value) fs.renameSync(path.join(md, 'cur', `${name}:2,`), path.join(md, 'cur', `${name.replace(/,S=.*$/, '')}:2,`));
  fs.rmSync(path.join(md, 'popcache'));
  await report('no popcache, names without sizes');
  await report('with the popcache that rebuilt');
  fs.rmSync(path.dirname(md), { recursive: true, force: true });
}

export async function main(): Promise<void> {
  await viaCommand();
  await inProcess();
  await openLarge();
}
