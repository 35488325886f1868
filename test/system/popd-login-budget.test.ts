/**
 * The login budget (finding 6 of issue 12): pure tests of LoginBudget on a
 * clock of their own, the networks addresses count in, and a real popd
 * hammered on one account by 20 connections while the real user logs in
 * from another address.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { addressPrefix } from '@popd/popd/address-prefix';
import { BudgetRules, Gate, LoginBudget, Ticket } from '@popd/popd/login-budget';
import { LOGIN_USER_BURST, LOGIN_USER_PER_S } from '@popd/shared/params';
import { PopdFixture } from '../lib/popd';
import { connectTls, connectTlsFrom, login } from '../lib/pop3tls';
import { waitFor } from '../lib/mailhost';

const RULES: BudgetRules = { userBurst: 10, userPerS: 1, netBurst: 30, netPerS: 2, maxWaitMs: 5_000, markMs: 60_000, marks: 8, tracked: 1_000 };

/** A budget on a clock the test moves, with the engagements it logged. */
function budget(rules: Partial<BudgetRules> = {}): { b: LoginBudget; at: (ms: number) => void; engaged: string[] } {
  let now = 0;
  const engaged: string[] = [];
  const b = new LoginBudget({ ...RULES, ...rules }, () => now, (kind, key) => engaged.push(`${kind} ${key}`));
  return { b, at: (ms) => (now = ms), engaged };
}

const checked = (g: Gate): { waitMs: number; ticket: Ticket } => {
  assert.equal(g.t, 'check', JSON.stringify(g));
  return g as { t: 'check'; waitMs: number; ticket: Ticket };
};

test('addressPrefix: IPv4 itself, IPv6 by /64, IPv4-mapped IPv6 as IPv4', () => {
  assert.equal(addressPrefix('192.0.2.7'), '192.0.2.7');
  assert.equal(addressPrefix('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(addressPrefix('::FFFF:192.0.2.7'), '192.0.2.7');
  assert.equal(addressPrefix('2001:db8:0:1::5'), '2001:db8:0:1::/64');
  assert.equal(addressPrefix('2001:0db8:0000:0001:ffff:ffff:ffff:ffff'), '2001:db8:0:1::/64');
  assert.equal(addressPrefix('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(addressPrefix('::1'), '0:0:0:0::/64');
  assert.equal(addressPrefix('fe80::1%eth0'), 'fe80:0:0:0::/64');
  assert.equal(addressPrefix('64:ff9b::192.0.2.7'), '64:ff9b:0:0::/64', 'NAT64 is not IPv4-mapped');
  assert.equal(addressPrefix('1:2:3:4:5:6:192.0.2.7'), '1:2:3:4::/64');
});

test('budget: any number of networks get at most burst + rate * T checks of one user name in any span T', () => {
  const { b, at, engaged } = budget();
  // 200 networks, one attempt every 10 ms for 100 s; each check runs after its wait and fails.
  const runs: number[] = [];
  let refused = 0;
  for (let t = 0; t < 100_000; t += 10) {
    at(t);
    const g = b.admit('alice', `10.0.${(t / 10) % 200}.1`);
    if (g.t === 'refuse') {
      refused++;
      continue;
    }
    runs.push(t + g.waitMs);
    assert.ok(g.waitMs <= RULES.maxWaitMs);
    b.settle(g.ticket, 'failed');
  }
  runs.sort((x, y) => x - y);
  for (let i = 0; i < runs.length; i++)
    for (let j = i; j < runs.length; j++) {
      const span = (runs[j] - runs[i]) / 1000;
      assert.ok(j - i + 1 <= RULES.userBurst + RULES.userPerS * span + 1e-9, `${j - i + 1} checks in ${span} s`);
    }
  assert.ok(runs.length >= 100 && runs.length <= 110 + 5, `${runs.length} checks in 100 s`);
  assert.ok(refused > 9_000);
  assert.deepEqual(engaged, ['user alice'], 'logged once, not per attempt');
});

test('budget: during an attack from one network the real user elsewhere waits at most one token, other users not at all', () => {
  const { b, at } = budget();
  let t = 0;
  // The attacker drains the burst, then keeps trying 20 times a second.
  for (; t < 30_500; t += 50) {
    at(t);
    const g = b.admit('alice', '192.0.2.66');
    if (g.t === 'check') b.settle(g.ticket, 'failed');
    else assert.equal(g.why, 'user');
  }
  at(t);
  const real = checked(b.admit('alice', '198.51.100.7'));
  assert.ok(real.waitMs > 0 && real.waitMs <= 1000 / RULES.userPerS, `waits ${real.waitMs} ms`);
  // While it waits its token is booked: the attacker gets none.
  at(t + real.waitMs - 1);
  assert.deepEqual(b.admit('alice', '192.0.2.66'), { t: 'refuse', why: 'user' });
  at(t + real.waitMs);
  b.settle(real.ticket, 'ok');
  // A success gives its token back (the attacker takes it) and its network's mark: that network books a turn again.
  assert.equal(checked(b.admit('alice', '192.0.2.66')).waitMs, 0);
  assert.ok(checked(b.admit('alice', '198.51.100.7')).waitMs > 0);
  // Another user, from the attacker's own network, is checked at once.
  assert.equal(checked(b.admit('bob', '192.0.2.66')).waitMs, 0);
});

test('budget: a user name that does not exist is budgeted exactly like one that does', () => {
  const run = (user: string): string[] => {
    const { b, at } = budget();
    const out: string[] = [];
    for (let t = 0; t < 20_000; t += 100) {
      at(t);
      const g = b.admit(user, t % 300 === 0 ? '192.0.2.1' : '192.0.2.2');
      out.push(g.t === 'check' ? `check ${g.waitMs}` : g.why);
      if (g.t === 'check') b.settle(g.ticket, 'failed');
    }
    return out;
  };
  assert.deepEqual(run('nosuchuser'), run('alice'));
});

test('budget: waiting is bounded; a network that tried the name is refused; an unchecked attempt gives its token back', () => {
  const { b, at } = budget({ maxWaitMs: 3_000 });
  at(0);
  for (let i = 0; i < 10; i++) b.settle(checked(b.admit('alice', '192.0.2.1')).ticket, 'failed');
  // Fresh networks book the next tokens: 1 s, 2 s, 3 s; the fourth would wait 4 s.
  const waits = [1, 2, 3].map((i) => checked(b.admit('alice', `198.51.100.${i}`)));
  assert.deepEqual(
    waits.map((w) => w.waitMs),
    [1000, 2000, 3000],
  );
  assert.deepEqual(b.admit('alice', '198.51.100.4'), { t: 'refuse', why: 'queue' });
  assert.deepEqual(b.admit('alice', '198.51.100.1'), { t: 'refuse', why: 'user' }, 'a network waiting already');
  // The first one's connection goes away: its token comes back, the fourth fits.
  b.settle(waits[0].ticket, 'unchecked');
  assert.equal(checked(b.admit('alice', '198.51.100.4')).waitMs, 3000);
  // A mark lasts markMs: after that, with the name's tokens used up again, the first network books a turn again.
  at(RULES.markMs + 1);
  for (let i = 0; i < 10; i++) b.settle(checked(b.admit('alice', '203.0.113.1')).ticket, 'failed');
  assert.deepEqual(b.admit('alice', '203.0.113.1'), { t: 'refuse', why: 'user' });
  assert.equal(checked(b.admit('alice', '192.0.2.1')).waitMs, 1000);
});

test('budget: a network spraying one password over many user names is refused after its own burst, other networks are not', () => {
  const { b, at, engaged } = budget();
  let checks = 0;
  for (let i = 0; i < 100; i++) {
    at(i * 10);
    const g = b.admit(`user${i}`, '2001:db8:0:1::/64');
    if (g.t === 'check') {
      checks++;
      b.settle(g.ticket, 'failed');
    } else assert.equal(g.why, 'network');
  }
  assert.equal(checks, RULES.netBurst + 1, '30 at once, and one more refilled meanwhile');
  assert.equal(b.admit('user0', '2001:db8:0:2::/64').t, 'check');
  assert.deepEqual(engaged, ['network 2001:db8:0:1::/64']);
  // A network pays for failures, not for checks: a NAT's 200 users logging in at once all get checked.
  const { b: nat } = budget();
  const tickets = Array.from({ length: 200 }, (_, i) => checked(nat.admit(`user${i}`, '192.0.2.1')).ticket);
  for (const t of tickets) nat.settle(t, 'ok');
  assert.equal(nat.admit('user0', '192.0.2.1').t, 'check');
});

test('budget: engaged once per engagement; state bounded however many names and networks', () => {
  const { b, at, engaged } = budget({ tracked: 100, marks: 150 });
  const attack = (from: number): void => {
    for (let t = from; t < from + 20_000; t += 100) {
      at(t);
      const g = b.admit('alice', '192.0.2.1');
      if (g.t === 'check') b.settle(g.ticket, 'failed');
    }
  };
  attack(0);
  // 10 s without attempts refill the bucket: the next attack is a new engagement.
  attack(40_000);
  assert.deepEqual(engaged, ['user alice', 'user alice']);
  for (let i = 0; i < 10_000; i++) {
    at(100_000 + i);
    const g = b.admit(`u${i % 5000}`, `10.${i >> 8}.${i & 255}.1`);
    if (g.t === 'check') b.settle(g.ticket, 'failed');
  }
  assert.deepEqual(b.size, { users: 100, nets: 100, marks: 150 });
});

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
