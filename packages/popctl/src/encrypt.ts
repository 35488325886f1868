// identity: the admin
/** popctl encrypt: a bcrypt hash in the $2b$ form of crypt_newhash(3) and smtpctl encrypt. */
import bcrypt from 'bcryptjs';
import { EX_SOFTWARE, EX_USAGE } from '@popd/shared/sysexits';
import { Failure } from './failure';

export function parseCost(s: string): number {
  if (!/^\d{1,2}$/.test(s) || Number(s) < 4 || Number(s) > 31) throw new Failure(EX_USAGE, `cost must be an integer from 4 to 31, not "${s}"`);
  return Number(s);
}

/** Hashes and verifies the result before anyone relies on it. */
export function encrypt(password: string, cost: number): string {
  const hash = bcrypt.hashSync(password, cost);
  if (!hash.startsWith('$2b$') || !bcrypt.compareSync(password, hash)) throw new Failure(EX_SOFTWARE, 'bcrypt produced a hash that does not verify');
  return hash;
}

/** bcrypt reads at most 72 bytes of a password. */
export function isTruncated(password: string): boolean {
  return bcrypt.truncates(password);
}
