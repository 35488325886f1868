// identity: root
/**
 * Password checks with bcryptjs (computed by a hash function given, in
 * popd the thread pool), with a bound on checks running and waiting. Every
 * failed check costs the work of the most expensive hash in authtab, whether
 * the user is unknown or has a cheaper hash; the comparison is constant-time.
 */
import bcrypt from 'bcryptjs';
import nacl from 'tweetnacl';

/** The cost field of a bcrypt hash or salt ("$2b$NN$..."). */
const costOf = (h: string): number => Number(h.slice(4, 6)) || 0;

/**
 * A bcrypt salt ("$2b$NN$" and 22 characters) matching nothing, for the
 * check of an unknown user, at the highest cost in authtab. At the most
 * common cost instead, a user of a rarer, higher cost failed measurably
 * later than an unknown user (1,662 ms against 1,107 ms at cost 13 against
 * 10), which told who exists; Verifier pads the cheaper users' failures up
 * to this cost.
 */
export function dummySalt(hashes: Iterable<string>): string {
  let cost = 0;
  for (const h of hashes) cost = Math.max(cost, costOf(h));
  return bcrypt.genSaltSync(cost === 0 ? 10 : cost);
}

/**
 * Salts whose hashes, added to one of the given hash's cost, make the work
 * of one hash at the dummy salt's cost: 2^c + (2^c + ... + 2^(max-1)) = 2^max.
 */
export function paddingSalts(hash: string, salt: string): string[] {
  const out: string[] = [];
  for (let c = costOf(hash); c < costOf(salt); c++) out.push(bcrypt.genSaltSync(c));
  return out;
}

export type Hasher = (pass: string, salt: string) => Promise<string>;

export class Verifier {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly maxRunning: number,
    private readonly maxWaiting: number,
    private readonly hash: Hasher,
  ) {}

  /**
   * true or false, or null when too many checks are queued or the check
   * failed (the caller answers SYS/TEMP). salt is dummySalt's: the work of an
   * unknown user, and of every failure.
   */
  async check(hash: string | undefined, salt: string, pass: string): Promise<boolean | null> {
    if (this.running >= this.maxRunning) {
      if (this.waiting.length >= this.maxWaiting) return null;
      // The finishing check hands its slot over: running stays counted.
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.running++;
    try {
      const computed = await this.hash(pass, hash === undefined ? salt : hash.slice(0, 29));
      const ok = hash !== undefined && nacl.verify(Buffer.from(computed), Buffer.from(hash));
      // A success may answer early: the client knows the password anyway.
      if (!ok && hash !== undefined) for (const s of paddingSalts(hash, salt)) await this.hash(pass, s);
      return ok;
    } catch {
      return null;
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
