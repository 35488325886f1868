/**
 * Sessions sharing a worker (-W uid): while one user's session opens a
 * 100,000-message mailbox (first open, all in new/; then LIST and UIDL; a
 * session silent until its mail has moved to cur/; once the maildir has
 * settled, the first later open, which lists cur/, and the next, which
 * trusts popcache.state) or streams a 10 MB RETR, another session of the
 * same uid sends NOOP after
 * NOOP. Its answer times say how long the shared event loop was held: the
 * target is tens of milliseconds at most. Three users of one uid: one
 * worker serves them all.
 */
import fs from 'node:fs';
import path from 'node:path';
import { STATE_SETTLE_MS } from '@popd/shared/params';
import * as load from './loadclient';
import { pct } from './stats';
import { emptied } from './wait';

const testLib = (name: string): string => path.join(__dirname, '..', '..', 'test', 'dist', 'lib', name);
const { PopdFixture } = require(testLib('popd')) as typeof import('../test/lib/popd');
const { addMessages, chownToMailUser } = require(testLib('maildirs')) as typeof import('../test/lib/maildirs');

const BIG = 100_000;
const SMALL = Buffer.from('From: bench@example.org\nSubject: fairness\n\n' + 'a line of text in the body of the message\n'.repeat(12));
const TEN_MB = Buffer.from('From: bench@example.org\nSubject: ten\n\n' + `${'x'.repeat(75)}\n`.repeat(10_000_000 / 76));

/** NOOPs, one after the other, until stop() is called: their answer times in ms. */
function noops(c: load.Pop3Client): { stop: () => Promise<number[]> } {
  const times: number[] = [];
  let running = true;
  const loop = (async (): Promise<void> => {
    while (running) {
      const t0 = performance.now();
      const a = await c.cmd('NOOP');
      if (!a.startsWith('+OK')) throw new Error(`NOOP: ${a}`);
      times.push(performance.now() - t0);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return times;
    },
  };
}

const row = (what: string, t: number[]): string => `| ${what} | ${t.length} | ${pct(t, 50).toFixed(2)} | ${pct(t, 99).toFixed(1)} | ${Math.max(...t).toFixed(1)} |`;

export async function main(): Promise<void> {
  const users = [
    { user: 'big', pass: 'pw-big' },
    { user: 'ten', pass: 'pw-ten' },
    { user: 'other', pass: 'pw-other' },
  ];
  const p = await PopdFixture.start({ accounts: users, verbose: false, args: ['-W', 'uid'] });
  try {
    const fill = (user: string, bodies: () => Buffer[], times: number): void => {
      const md = p.maildir(user);
      for (const d of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(md, d), { recursive: true, mode: 0o700 });
      for (let i = 0; i < times; i++) addMessages(md, bodies(), { base: 1_600_000_000 + i * 10_000 });
      chownToMailUser(md);
    };
    console.log(`  writing ${BIG} messages`);
    fill('big', () => Array.from({ length: 10_000 }, () => SMALL), BIG / 10_000);
    fill('ten', () => [TEN_MB], 1);
    fill('other', () => [SMALL], 1);

    const other = await load.session(p.tlsPort, users[2]);
    const lines = ['| while the other session does | NOOPs | p50 ms | p99 ms | max ms |', '| --- | --- | --- | --- | --- |'];
    let n = noops(other);
    await new Promise((r) => setTimeout(r, 2000));
    lines.push(row('nothing', await n.stop()));

    n = noops(other);
    const open = await load.timedOpen(p.tlsPort, users[0]);
    lines.push(row(`login to STAT, ${BIG} messages, first open (all in new/): ${open.ms.toFixed(0)} ms`, await n.stop()));
    n = noops(other);
    const listed = await load.timedMulti(open.c, 'LIST');
    const uidl = await load.timedMulti(open.c, 'UIDL');
    lines.push(row(`LIST + UIDL of ${BIG}: ${(listed.ms + uidl.ms).toFixed(0)} ms`, await n.stop()));
    n = noops(other);
    const t1 = performance.now();
    await emptied(path.join(p.maildir('big'), 'new'));
    lines.push(row(`the first session silent until new/ is empty: ${(performance.now() - t1).toFixed(0)} ms`, await n.stop()));
    await load.quit(open.c);
    await new Promise((r) => setTimeout(r, STATE_SETTLE_MS + 500));
    for (const what of ['the first later open (lists cur/)', 'a later open (popcache.state)']) {
      n = noops(other);
      const later = await load.timedOpen(p.tlsPort, users[0]);
      lines.push(row(`login to STAT, ${what}: ${later.ms.toFixed(0)} ms`, await n.stop()));
      await load.quit(later.c);
    }

    const ten = await load.session(p.tlsPort, users[1]);
    n = noops(other);
    const t0 = performance.now();
    const r = await load.retrAll(ten, await load.list(ten), 1);
    lines.push(row(`RETR of 10 MB: ${(performance.now() - t0).toFixed(0)} ms, ${((r.octets / (performance.now() - t0)) * 1000 / 1e6).toFixed(0)} MB/s`, await n.stop()));
    await load.quit(ten);
    await load.quit(other);
    console.log(lines.join('\n'));
  } finally {
    await p.stop();
    fs.rmSync(p.dir, { recursive: true, force: true });
  }
}
