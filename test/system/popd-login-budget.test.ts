/**
 * The login budget (docs/architecture.md, "Login budget") in a real popd:
 * one account hammered by 20 connections while the real user logs in from
 * another address, and by fresh addresses while the user's own network
 * keeps its lane. The pure tests of LoginBudget are in test/unit.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LOGIN_USER_BURST, LOGIN_USER_PER_S } from '@popd/shared/params';
import { PopdFixture } from '../lib/popd';
import { connectTls, connectTlsFrom, login } from '../lib/pop3tls';
import { waitFor } from '../lib/mailhost';

describe('a real popd under a brute-force attack on one account', () => {
  let p: PopdFixture;
  before(async () => {
    // -M 50: the attackers' 20 connections, and those still closing, never meet the per-address cap.
    p = await PopdFixture.start({ accounts: [{ user: 'alice', pass: 'alice-pw' }, { user: 'bob', pass: 'bob-pw' }], args: ['-M', '50'] });
  });
  after(async () => {
    assert.equal((await p.stop()).code, 0);
  });

  test('20 reconnecting connections get at most burst + rate * span checks; the real user and another user log in meanwhile', { timeout: 60_000 }, async (t) => {
    let stop = false;
    let evaluated = 0;
    let refused = 0;
    const other: string[] = [];
    let firstSent = 0;
    let lastAnswer = 0;
    // Each attacker: wrong passwords until popd closes the connection (3 failures), then again.
    const attacker = async (n: number): Promise<void> => {
      for (let i = 0; !stop; ) {
        const c = await connectTls(p.tlsPort);
        await c.line();
        try {
          while (!stop) {
            if (firstSent === 0) firstSent = Date.now();
            const answer = await login(c, 'alice', `guess ${n}.${i++}`);
            lastAnswer = Date.now();
            if (answer.startsWith('-ERR [AUTH]')) evaluated++;
            else if (answer === '-ERR [SYS/TEMP] too many login attempts, try again later') refused++;
            else {
              other.push(answer);
              break;
            }
          }
        } catch {
          // closed after three failures
        }
        c.io.destroy();
      }
    };
    const attackers = Array.from({ length: 20 }, (_, n) => attacker(n));
    let realMs = 0;
    try {
      await waitFor('the attack to use up the burst', () => evaluated + refused > 2 * LOGIN_USER_BURST);
      // The real user, from another address; then another user from the attackers' own address.
      const started = Date.now();
      const real = await connectTlsFrom('127.0.0.2', p.tlsPort);
      await real.line();
      assert.match(await login(real, 'alice', 'alice-pw'), /^\+OK/);
      realMs = Date.now() - started;
      assert.match(await real.cmd('QUIT'), /^\+OK/);
      const bob = await connectTls(p.tlsPort);
      await bob.line();
      assert.match(await login(bob, 'bob', 'bob-pw'), /^\+OK/);
      assert.match(await bob.cmd('QUIT'), /^\+OK/);
      await new Promise((r) => setTimeout(r, 3_000));
    } finally {
      stop = true;
      await Promise.all(attackers);
    }
    const span = (lastAnswer - firstSent) / 1000;
    t.diagnostic(`${evaluated} passwords checked and ${refused} refused in ${span.toFixed(1)} s: ${(evaluated / span).toFixed(1)} checked/s; the real user logged in after ${realMs} ms`);
    assert.ok(evaluated <= LOGIN_USER_BURST + LOGIN_USER_PER_S * span + 1, `${evaluated} checks in ${span} s`);
    assert.ok(refused > evaluated, 'the attackers kept trying');
    assert.deepEqual(other, []);
    assert.equal(p.log.filter((l) => /login budget: .* user alice/.test(l)).length, 1, 'logged once');
    assert.ok(p.log.some((l) => /login alice from 127\.0\.0\.2:/.test(l)));
  });
});

describe('a real popd under an attack from ever fresh addresses on one account', () => {
  let p: PopdFixture;
  before(async () => {
    p = await PopdFixture.start({ accounts: [{ user: 'alice', pass: 'alice-pw' }] });
  });
  after(async () => {
    assert.equal((await p.stop()).code, 0);
  });

  test('the bookings kept full shut out addresses never seen; the address the user logged in from before is served', { timeout: 60_000 }, async (t) => {
    const TRIES = 5;
    // The user's own network logs in before the attack.
    const home = async (): Promise<string> => {
      const c = await connectTlsFrom('127.0.0.2', p.tlsPort);
      await c.line();
      const answer = await login(c, 'alice', 'alice-pw');
      if (answer.startsWith('+OK')) await c.cmd('QUIT');
      c.io.destroy();
      return answer;
    };
    assert.match(await home(), /^\+OK/);
    let stop = false;
    const seen = { refused: 0, checked: 0 };
    let next = 0;
    // One wrong password per connection, each from an address not used before (each its own network, as each /64 of a /58 would be).
    const attacker = async (): Promise<void> => {
      while (!stop) {
        const n = next++;
        const c = await connectTlsFrom(`127.1.${n >> 8}.${n & 255}`, p.tlsPort);
        await c.line();
        const answer = await login(c, 'alice', `guess ${n}`);
        c.io.destroy();
        if (answer === '-ERR [SYS/TEMP] too many login attempts, try again later') seen.refused++;
        else if (answer.startsWith('-ERR [AUTH]')) seen.checked++;
        else assert.fail(answer);
      }
    };
    // Five of them at a time hold the booked turns; the others are refused, about once a second each (the delay after a failure).
    const attackers = Array.from({ length: 16 }, attacker);
    const own: string[] = [];
    let during = { refused: 0, checked: 0 };
    try {
      await waitFor('the bookings to fill up', () => seen.refused >= 10);
      const from = { ...seen };
      // The user's own address logs in five times, a second apart, while the attack goes on.
      for (let i = 0; i < TRIES; i++) {
        own.push(await home());
        await new Promise((r) => setTimeout(r, 1_000));
      }
      during = { refused: seen.refused - from.refused, checked: seen.checked - from.checked };
    } finally {
      stop = true;
      await Promise.all(attackers);
    }
    assert.deepEqual(
      own.map((a) => a.slice(0, 3)),
      Array<string>(TRIES).fill('+OK'),
      own.join(' | '),
    );
    t.diagnostic(`while the user logged in: ${during.refused} fresh addresses refused, ${during.checked} checked`);
    // Meanwhile the name's checks went on at its rate, to the fresh addresses that booked them; most found every turn booked.
    assert.ok(during.refused > during.checked, JSON.stringify(during));
  });
});
