// identity: root
/**
 * popd's login budget (docs/architecture.md, "Login budget"): how many
 * passwords popd checks per user name and per network, across every
 * connection, so that reconnecting does not buy an attacker more guesses.
 * Pure: the clock is given; popd answers and waits.
 *
 * Each user name has a token bucket: a check takes a token before it
 * starts, and a successful or unchecked one gives it back, so the failed
 * checks of one user name in any span of T seconds are at most
 * userBurst + userPerS * T, from any number of connections and networks
 * (plus the lanes below, on the networks the user logged in from).
 * A user name is budgeted whether or not it exists: the budget never looks
 * at authtab, so its answers tell nobody who exists (but for a lane's, below).
 *
 * Out of tokens, a user name is not locked: a network that has tried it
 * within markMs (an attacker's, hammering) is refused at once without a
 * check, but a network that has not (the real user's phone elsewhere) books
 * the next token and waits for it, at most maxWaitMs. Booked tokens come
 * before any others: a network refused this way never takes a token while
 * someone waits.
 *
 * Fresh networks can keep those bookings full (one attempt a second, each
 * from another IPv6 /64 of the attacker's /58), so a network that logged
 * the user name in within knownMs has a lane of its own: a bucket per
 * network and user name (knownBurst, then knownPerS), used only while the
 * name's bucket is empty, never booked, never refused for a mark. Only a
 * right password opens a lane, so an attacker gets one only on a network
 * the user logs in from, and there at most knownBurst + knownPerS * T more
 * guesses in T. Such an attacker (behind the user's NAT) who also empties
 * the name's bucket from elsewhere sees its checks answered at once: the
 * name exists and logged in from here. A name keeps its knownPerUser most
 * recent lanes, so one account logging in from many networks cannot push
 * out the lanes of others.
 *
 * Each network (addressPrefix) has a bucket of failures across every user
 * name (password spraying) that, when empty, refuses everything from it. It
 * is charged when a check has failed, not when it starts: a NAT's or a
 * webmail's many simultaneous logins, mostly right, are not held back, and
 * the checks under way from one network, which may fail beyond its budget,
 * are at most its connections (-M).
 *
 * State is bounded: the least recently used user names and networks beyond
 * `tracked` are forgotten (a forgotten one starts again with a full bucket:
 * forgetting a user name costs an attacker `tracked` fresh checks, at most
 * userBurst guesses each time), and so are the least recently used marks
 * beyond `marks` (a network whose mark is forgotten only books a turn again)
 * and the lanes of the least recently logged-in user names beyond `known`.
 */

export interface BudgetRules {
  /** Failed checks per user name: this many at once, then this many a second. */
  userBurst: number;
  userPerS: number;
  /** Failed checks per network, over every user name. */
  netBurst: number;
  netPerS: number;
  /** How long a network that has not tried a user name may wait for that user name's next token. */
  maxWaitMs: number;
  /** How long an attempt (or a refusal) marks its network as one that tried the user name. */
  markMs: number;
  /** Marks (network and user name) remembered. */
  marks: number;
  /** User names, and networks, remembered each. */
  tracked: number;
  /** A network's own lane to a user name it logged in: this many checks at once, then this many a second. */
  knownBurst: number;
  knownPerS: number;
  /** How long after its last right password a network keeps its lane. */
  knownMs: number;
  /** Lanes one user name keeps (the networks it logged in from most recently), and user names with lanes remembered. */
  knownPerUser: number;
  known: number;
}

/** A check to run (after waitMs), or an answer without one. */
export type Gate = { t: 'check'; waitMs: number; ticket: Ticket } | { t: 'refuse'; why: 'user' | 'network' | 'queue' };

export interface Ticket {
  readonly user: string;
  readonly net: string;
  /** Whose token the check holds: the user name's, or the lane of a network that logged it in. */
  readonly lane: 'user' | 'known';
}

/** What became of a check: a wrong password, a right one, or none ran (the connection went, the server was busy). */
export type Outcome = 'failed' | 'ok' | 'unchecked';

/** A token bucket: its level when last refilled, at that time. */
interface Tokens {
  level: number;
  at: number;
}

interface Bucket extends Tokens {
  /** Ran out of tokens and has not been full since: engaged (logged once). */
  limited: boolean;
}

/** The lane of a network that logged a user name in. */
interface Lane extends Tokens {
  readonly net: string;
  /** When it last gave a right password. */
  okAt: number;
}

/** A Map that forgets its least recently used entries beyond max. */
class Recent<V> {
  private readonly m = new Map<string, V>();

  constructor(private readonly max: number) {}

  get size(): number {
    return this.m.size;
  }

  get(k: string): V | undefined {
    return this.m.get(k);
  }

  /** Stores v as the most recent entry. */
  set(k: string, v: V): V {
    this.m.delete(k);
    this.m.set(k, v);
    if (this.m.size > this.max) this.m.delete(this.m.keys().next().value!);
    return v;
  }

  delete(k: string): void {
    this.m.delete(k);
  }
}

/** The key of a mark: the network, popd's own text, has no NUL, so no two pairs share a key. */
const markOf = (user: string, net: string): string => `${net}\0${user}`;

export class LoginBudget {
  private readonly users: Recent<Bucket>;
  private readonly nets: Recent<Bucket>;
  /** When a network last tried a user name (markOf). */
  private readonly marks: Recent<number>;
  /** The lanes of each user name, at most knownPerUser, the least recently logged in first. */
  private readonly lanes: Recent<Lane[]>;

  constructor(
    private readonly rules: BudgetRules,
    /** Milliseconds, never going back (performance.now). */
    private readonly clock: () => number,
    /** A user name or a network ran out of tokens: once per engagement, not per attempt. */
    private readonly engaged: (kind: 'user' | 'network', key: string) => void,
  ) {
    this.users = new Recent(rules.tracked);
    this.nets = new Recent(rules.tracked);
    this.marks = new Recent(rules.marks);
    this.lanes = new Recent(rules.known);
  }

  /** User names, networks, marks and user names with lanes remembered (for tests of the bound). */
  get size(): { users: number; nets: number; marks: number; lanes: number } {
    return { users: this.users.size, nets: this.nets.size, marks: this.marks.size, lanes: this.lanes.size };
  }

  /** How many lanes user has (for tests of the bound). */
  lanesOf(user: string): number {
    return this.lanes.get(user)?.length ?? 0;
  }

  admit(user: string, net: string): Gate {
    const r = this.rules;
    const now = this.clock();
    const n = this.nets.set(net, this.nets.get(net) ?? { level: r.netBurst, at: now, limited: false });
    refillBucket(n, r.netBurst, r.netPerS, now);
    if (n.level < 1) {
      this.engage(n, 'network', net);
      return { t: 'refuse', why: 'network' };
    }
    const u = this.users.set(user, this.users.get(user) ?? { level: r.userBurst, at: now, limited: false });
    refillBucket(u, r.userBurst, r.userPerS, now);
    const mark = markOf(user, net);
    let waitMs = 0;
    if (u.level < 1) {
      this.engage(u, 'user', user);
      const lane = this.lanes.get(user)?.find((l) => l.net === net);
      if (lane !== undefined && now - lane.okAt < r.knownMs) {
        refill(lane, r.knownBurst, r.knownPerS, now);
        if (lane.level >= 1) {
          lane.level -= 1;
          return { t: 'check', waitMs: 0, ticket: { user, net, lane: 'known' } };
        }
      }
      const at = this.marks.get(mark);
      if (at !== undefined && now - at < r.markMs) {
        this.marks.set(mark, now);
        return { t: 'refuse', why: 'user' };
      }
      // The token after those booked already: the level comes back to 0 when this one's turn has come.
      waitMs = Math.ceil(((1 - u.level) * 1000) / r.userPerS);
      if (waitMs > r.maxWaitMs) return { t: 'refuse', why: 'queue' };
    }
    u.level -= 1;
    this.marks.set(mark, now);
    return { t: 'check', waitMs, ticket: { user, net, lane: 'user' } };
  }

  /** After a check that admit allowed: a failure keeps the user name's token spent and costs the network one; anything else gives the token back. */
  settle(t: Ticket, outcome: Outcome): void {
    const r = this.rules;
    const now = this.clock();
    if (outcome === 'failed') {
      this.marks.set(markOf(t.user, t.net), now);
      const n = this.nets.get(t.net);
      if (n !== undefined) {
        refillBucket(n, r.netBurst, r.netPerS, now);
        n.level -= 1;
      }
      return;
    }
    if (outcome === 'ok') {
      this.marks.delete(markOf(t.user, t.net));
      this.openLane(t.user, t.net, now);
    }
    if (t.lane === 'known') {
      const lane = this.lanes.get(t.user)?.find((l) => l.net === t.net);
      if (lane !== undefined) giveBack(lane, r.knownBurst, r.knownPerS, now);
      return;
    }
    const u = this.users.get(t.user);
    if (u === undefined) return;
    giveBack(u, r.userBurst, r.userPerS, now);
    if (u.level >= r.userBurst) u.limited = false;
  }

  /**
   * A right password from net: its lane to user, kept or opened, becomes the
   * user name's most recent. A name keeps knownPerUser lanes at most, so one
   * account logging in from many networks pushes out only its own lanes.
   */
  private openLane(user: string, net: string, now: number): void {
    const r = this.rules;
    const lanes = this.lanes.set(user, this.lanes.get(user) ?? []);
    const i = lanes.findIndex((l) => l.net === net);
    const lane = i >= 0 ? lanes.splice(i, 1)[0] : { net, level: r.knownBurst, at: now, okAt: now };
    lane.okAt = now;
    lanes.push(lane);
    if (lanes.length > r.knownPerUser) lanes.shift();
  }

  private engage(b: Bucket, kind: 'user' | 'network', key: string): void {
    if (b.limited) return;
    b.limited = true;
    this.engaged(kind, key);
  }
}

/** Adds the tokens earned since b.at, up to burst. */
function refill(b: Tokens, burst: number, perS: number, now: number): void {
  if (now > b.at) {
    b.level = Math.min(burst, b.level + ((now - b.at) * perS) / 1000);
    b.at = now;
  }
}

/** refill; a bucket full again is no longer engaged. */
function refillBucket(b: Bucket, burst: number, perS: number, now: number): void {
  refill(b, burst, perS, now);
  if (b.level >= burst) b.limited = false;
}

/** A check that did not fail returns its token. */
function giveBack(b: Tokens, burst: number, perS: number, now: number): void {
  refill(b, burst, perS, now);
  b.level = Math.min(burst, b.level + 1);
}
