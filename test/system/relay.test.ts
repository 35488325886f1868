/**
 * authpop's relay (packages/authpop/src/relay.ts) through a real popd with
 * one authpop: every relay of the process reads its worker into the same
 * buffer, so sessions served at the same time, one of them stalled with a
 * chunk on its way, must each get their messages byte for byte, across
 * chunk boundaries and with pipelined answers sharing chunks.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { RELAY_CHUNK } from '@popd/shared/params';
import { wireOracle } from '../lib/maildirs';
import { Pop3Client } from '../lib/pop3';
import { connectTls, login } from '../lib/pop3tls';
import { PopdFixture } from '../lib/popd';

/**
 * A message of about size bytes whose wire form needs every edit: bare LFs
 * and CRLFs, a lone CR, lines that start with "." and a line that is only
 * ".", lines of every length up to 1,000 (so edits fall on both sides of
 * every chunk boundary), and no LF at the end. Deterministic for a seed.
 */
function tricky(seed: number, size: number): Buffer {
  let x = seed;
  const rnd = (n: number): number => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % n;
  };
  const parts: string[] = [`From: relay@example.org\nSubject: relay ${seed}\n\n`];
  let len = parts[0].length;
  while (len < size) {
    const kind = rnd(10);
    const text = kind === 0 ? '.' : kind === 1 ? '.' + 'd'.repeat(rnd(200)) : kind === 2 ? 'cr\rinside' : 'x'.repeat(rnd(1000));
    const line = text + (rnd(3) === 0 ? '\r\n' : '\n');
    parts.push(line);
    len += line.length;
  }
  parts.push('no newline at the end');
  return Buffer.from(parts.join(''), 'latin1');
}

/** The answer to a RETR of body: its status line with the octets of the wire form, then the wire form byte for byte. */
async function expectMessage(c: Pop3Client, body: Buffer, what: string): Promise<void> {
  const wire = wireOracle(body);
  assert.equal(await c.line(), `+OK ${wire.length} octets`, `${what}: status line`);
  const got = await c.multi();
  assert.equal(got.length, wire.length, `${what}: octets`);
  assert.ok(got.equals(wire), `${what}: the bytes differ`);
}

async function session(p: PopdFixture, user: string, pass: string): Promise<Pop3Client> {
  const c = await connectTls(p.tlsPort);
  assert.match(await c.line(), /^\+OK/);
  assert.match(await login(c, user, pass), /^\+OK/);
  return c;
}

describe('the relay', () => {
  let p: PopdFixture;
  // Beyond what loopback TCP buffers for a client that does not read (a 128 KiB window, up to 4 MiB in authpop's socket):
  // the stalled session's relay has a chunk on its way while the others use the shared buffer.
  const stalled = tricky(1, 12_000_000);
  const fast = [tricky(2, 700_000), tricky(3, 3 * RELAY_CHUNK + 1), tricky(4, 1000)];
  const piped = [tricky(5, 2 * RELAY_CHUNK), tricky(6, 10), tricky(7, 300_000), tricky(8, RELAY_CHUNK - 7), tricky(9, 1_500_000)];
  before(async () => {
    p = await PopdFixture.start({
      accounts: [
        { user: 'stalled', pass: 'pw-s', messages: [stalled] },
        { user: 'fast', pass: 'pw-f', messages: fast },
        { user: 'piped', pass: 'pw-p', messages: piped },
      ],
      args: ['-A', '1'],
    });
  });
  after(async () => {
    if (!p) return;
    await p.stop();
    fs.rmSync(p.dir, { recursive: true, force: true });
  });

  test('sessions through one authpop at once, one of them stalled, each get their messages byte for byte', async () => {
    const slow = await session(p, 'stalled', 'pw-s');
    slow.send('RETR 1');
    // It reads nothing yet: its relay waits with a chunk in TLS while the others are served.
    await new Promise((r) => setTimeout(r, 500));
    const one = (async () => {
      const c = await session(p, 'fast', 'pw-f');
      for (const [i, body] of fast.entries()) {
        c.send(`RETR ${i + 1}`);
        await expectMessage(c, body, `fast, message ${i + 1}`);
      }
      assert.match(await c.cmd('QUIT'), /^\+OK/);
    })();
    const pipelined = (async () => {
      const c = await session(p, 'piped', 'pw-p');
      c.send(piped.map((_, i) => `RETR ${i + 1}`).join('\r\n'));
      for (const [i, body] of piped.entries()) await expectMessage(c, body, `pipelined, message ${i + 1}`);
      assert.match(await c.cmd('QUIT'), /^\+OK/);
    })();
    await Promise.all([one, pipelined]);
    await expectMessage(slow, stalled, 'stalled');
    assert.match(await slow.cmd('QUIT'), /^\+OK/);
  });
});
