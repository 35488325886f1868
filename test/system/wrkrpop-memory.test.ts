/**
 * Backpressure, measured on the real worker: a client pipelines 10,000 RETRs
 * (500 MB of answers) and then reads slowly. The worker must not buffer what
 * the client has not read: its peak resident set (VmHWM in /proc) stays under
 * MEMORY_BOUND, far below the 500 MB it would need otherwise.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { seedMaildir, wireOracle, removeSeeded } from '../lib/maildirs';
import { login, killWorkers } from '../lib/worker';

after(() => {
  killWorkers();
  removeSeeded();
});

/** The bound this test states: a Node.js process (about 50 MB here) plus bounded buffers. */
const MEMORY_BOUND_KB = 120 * 1024;
const RETRS = 10_000;

const memKb = (pid: number, field: 'VmRSS' | 'VmHWM'): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

test(`slow reader, ${RETRS} pipelined RETRs of 50 KB: the worker's peak RSS stays under ${MEMORY_BOUND_KB / 1024} MB`, { skip: !fs.existsSync('/proc/self/status') && 'needs /proc' }, async () => {
  const bodies = Array.from({ length: 10 }, (_, i) => Buffer.from(`Subject: ${i}\n\n` + (`.dot line\n` + `line ${i} of a fifty kilobyte message\n`.repeat(99)).repeat(14)));
  const wire = bodies.map(wireOracle);
  const s = seedMaildir(bodies);
  const w = await login(s.dir);
  const pid = w.child.pid!;
  w.pop.sendRaw(Array.from({ length: RETRS }, (_, i) => `RETR ${(i % 10) + 1}\r\n`).join(''));
  // The client stalls: the worker can only fill the socket, then must wait.
  await new Promise((r) => setTimeout(r, 1000));
  const stalled = memKb(pid, 'VmRSS');
  let total = 0;
  for (let i = 0; i < RETRS; i++) {
    const r = await w.pop.reply(true);
    assert.equal(r.status, `+OK ${wire[i % 10].length} octets`);
    assert.ok(r.body!.equals(wire[i % 10]), `RETR ${i + 1}`);
    total += r.body!.length;
    // Slow for the first thousand answers: a pause every 50.
    if (i < 1000 && i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
  }
  const peak = memKb(pid, 'VmHWM');
  console.log(`worker RSS while stalled ${Math.round(stalled / 1024)} MB, peak ${Math.round(peak / 1024)} MB, for ${Math.round(total / 1e6)} MB sent`);
  assert.ok(total > 500e6);
  assert.ok(stalled < MEMORY_BOUND_KB, `RSS while stalled: ${stalled} kB`);
  assert.ok(peak < MEMORY_BOUND_KB, `peak RSS: ${peak} kB`);
  w.io.end();
  assert.equal((await w.exited).code, 0);
});
