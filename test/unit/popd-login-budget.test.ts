/** The login budget (docs/architecture.md, "Login budget"), pure: LoginBudget on a clock of its own, and the networks addresses count in. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressPrefix } from '@popd/popd/address-prefix';
import { BudgetRules, Gate, LoginBudget, Ticket } from '@popd/popd/login-budget';

const RULES: BudgetRules = {
  userBurst: 10,
  userPerS: 1,
  netBurst: 30,
  netPerS: 2,
  maxWaitMs: 5_000,
  markMs: 60_000,
  marks: 8,
  tracked: 1_000,
  knownBurst: 3,
  knownPerS: 1 / 60,
  knownMs: 3_600_000,
  knownPerUser: 3,
  known: 8,
};

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
  // A success gives its token back (the attacker takes it) and opens its network's lane: that network is checked at once.
  assert.equal(checked(b.admit('alice', '192.0.2.66')).waitMs, 0);
  assert.deepEqual(b.admit('alice', '198.51.100.7'), { t: 'check', waitMs: 0, ticket: { user: 'alice', net: '198.51.100.7', lane: 'known' } });
  // Another network that never logged in books a turn.
  assert.ok(checked(b.admit('alice', '198.51.100.8')).waitMs > 0);
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
  assert.deepEqual(b.size, { users: 100, nets: 100, marks: 150, lanes: 0 });
  // Only a right password opens a lane, and lanes are bounded too: user names with lanes, and lanes per name.
  for (let i = 0; i < 500; i++) b.settle(checked(b.admit(`v${i}`, '198.51.100.1')).ticket, 'ok');
  assert.equal(b.size.lanes, RULES.known);
  for (let i = 0; i < 500; i++) b.settle(checked(b.admit('v499', `203.0.113.${i % 250}`)).ticket, 'ok');
  assert.equal(b.lanesOf('v499'), RULES.knownPerUser);
  assert.equal(b.size.lanes, RULES.known);
});

test('budget: one account logging in from many networks keeps only its own most recent lanes and pushes out nobody else\'s', () => {
  const { b, at } = budget();
  at(0);
  b.settle(checked(b.admit('alice', '192.0.2.10')).ticket, 'ok');
  for (let i = 0; i < 1_000; i++) b.settle(checked(b.admit('mallory', `2001:db8:${i.toString(16)}::/64`)).ticket, 'ok');
  assert.equal(b.lanesOf('mallory'), RULES.knownPerUser);
  // alice's name drained from elsewhere: her own network still has its lane.
  for (let g = b.admit('alice', '192.0.2.66'); g.t === 'check'; g = b.admit('alice', '192.0.2.66')) b.settle(g.ticket, 'failed');
  assert.equal(checked(b.admit('alice', '192.0.2.10')).ticket.lane, 'known');
  // mallory's oldest networks lost theirs; the most recent kept them.
  for (let g = b.admit('mallory', '192.0.2.66'); g.t === 'check'; g = b.admit('mallory', '192.0.2.66')) b.settle(g.ticket, 'failed');
  assert.notEqual((b.admit('mallory', '2001:db8:0::/64') as { ticket?: Ticket }).ticket?.lane, 'known');
  assert.equal(checked(b.admit('mallory', `2001:db8:${(999).toString(16)}::/64`)).ticket.lane, 'known');
});

test('budget: fresh networks that keep every turn booked shut out a new network, not one that logged the name in', () => {
  const { b, at } = budget();
  const home = '2001:db8:1:1::/64';
  at(0);
  b.settle(checked(b.admit('alice', home)).ticket, 'ok');
  // Ten attempts a second, each from another /64 of the attacker's, for two minutes; each check fails when its turn comes.
  let lane = 0;
  let fresh = 0;
  for (let t = 1_000, i = 0; t < 121_000; t += 100, i++) {
    at(t);
    const g = b.admit('alice', `2001:db8:2:${i.toString(16)}::/64`);
    if (g.t === 'check') b.settle(g.ticket, 'failed');
    if (t < 20_000 || t % 10_000 !== 0) continue;
    // Every 10 s once the queue is full: a network never seen is refused, the user's own is checked at once.
    assert.deepEqual(b.admit('alice', `2001:db8:3:${i.toString(16)}::/64`), { t: 'refuse', why: 'queue' });
    const own = checked(b.admit('alice', home));
    assert.deepEqual([own.waitMs, own.ticket.lane], [0, 'known']);
    b.settle(own.ticket, 'ok');
    lane++;
    fresh++;
  }
  assert.equal(lane, 11);
  assert.equal(fresh, 11);
});

test("budget: a lane gives at most knownBurst + knownPerS * T failed checks in T, and closes knownMs after the last right password", () => {
  const { b, at } = budget();
  const home = '192.0.2.10';
  at(0);
  b.settle(checked(b.admit('alice', home)).ticket, 'ok');
  // Someone else drains the name and keeps it drained, from another network (refused at once: it tried the name).
  const drain = (t: number): void => {
    at(t);
    for (let g = b.admit('alice', '192.0.2.66'); g.t === 'check'; g = b.admit('alice', '192.0.2.66')) b.settle(g.ticket, 'failed');
  };
  // An attacker on the user's own network, once a second for ten minutes, every guess wrong.
  const runs: number[] = [];
  for (let t = 1_000; t <= 601_000; t += 1_000) {
    drain(t);
    const g = b.admit('alice', home);
    if (g.t === 'check') {
      assert.equal(g.ticket.lane, 'known');
      runs.push(t);
      b.settle(g.ticket, 'failed');
    } else assert.equal(g.why, 'user', 'the lane used up, its failures mark it like any network');
  }
  for (let i = 0; i < runs.length; i++)
    for (let j = i; j < runs.length; j++) {
      const span = (runs[j] - runs[i]) / 1000;
      assert.ok(j - i + 1 <= RULES.knownBurst + RULES.knownPerS * span + 1e-9, `${j - i + 1} checks in ${span} s`);
    }
  assert.equal(runs.length, RULES.knownBurst + 10);
  // A right password on the lane keeps it open; knownMs after the last one it is gone.
  drain(700_000);
  const ok = checked(b.admit('alice', home));
  b.settle(ok.ticket, 'ok');
  drain(700_000 + RULES.knownMs - 1);
  assert.equal(checked(b.admit('alice', home)).ticket.lane, 'known');
  drain(700_000 + RULES.knownMs);
  assert.notEqual((b.admit('alice', home) as { ticket?: Ticket }).ticket?.lane, 'known');
});
