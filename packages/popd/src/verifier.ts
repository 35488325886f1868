/**
 * Password checks with bcryptjs (computed by a hash function given, in
 * popd the thread pool), with a bound on checks running and waiting. An
 * unknown user costs the same work, against a salt of the usual cost; the
 * comparison is constant-time.
 */
import bcrypt from 'bcryptjs';
import nacl from 'tweetnacl';

/** A bcrypt salt ("$2b$10$" and 22 characters): the same work as a real check, matching nothing. */
export function dummySalt(hashes: Iterable<string>): string {
  const costs = new Map<number, number>();
  for (const h of hashes) {
    const c = Number(h.slice(4, 6));
    costs.set(c, (costs.get(c) ?? 0) + 1);
  }
  let cost = 10;
  let most = 0;
  for (const [c, n] of costs) if (n > most) [cost, most] = [c, n];
  return bcrypt.genSaltSync(cost);
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

  /** true or false, or null when too many checks are queued or the check failed (the caller answers SYS/TEMP). */
  async check(hash: string | undefined, salt: string, pass: string): Promise<boolean | null> {
    if (this.running >= this.maxRunning) {
      if (this.waiting.length >= this.maxWaiting) return null;
      // The finishing check hands its slot over: running stays counted.
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.running++;
    try {
      const computed = await this.hash(pass, hash === undefined ? salt : hash.slice(0, 29));
      return hash !== undefined && nacl.verify(Buffer.from(computed), Buffer.from(hash));
    } catch {
      return null;
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
