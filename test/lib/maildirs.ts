/**
 * Maildirs for wrkrpop tests and benchmarks, written the way a foreign
 * delivery agent would (files straight into new/ or cur/, no popcache), with
 * names that fix the delivery order. Sizes come from an oracle written
 * independently of shared/wire.ts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MAILUSER, isRoot, tmpdir } from './util';

/** The wire form by the rule in docs/architecture.md ("Maildir"), byte by byte: bare LF -> CRLF, a CRLF at the end when missing. */
export function wireOracle(b: Buffer): Buffer {
  const out = Buffer.alloc(wireOctets(b));
  let o = 0;
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x0a && (i === 0 || b[i - 1] !== 0x0d)) out[o++] = 0x0d;
    out[o++] = b[i];
  }
  if (o < out.length) out.write('\r\n', o, 'latin1');
  return out;
}

/** Wire octets without building the wire form (for big messages). */
export function wireOctets(b: Buffer): number {
  let n = b.length;
  for (let i = b.indexOf(0x0a); i !== -1; i = b.indexOf(0x0a, i + 1)) if (i === 0 || b[i - 1] !== 0x0d) n++;
  return b.length > 0 && b[b.length - 1] !== 0x0a ? n + 2 : n;
}

export const uidlOf = (unique: string): string => crypto.createHash('sha256').update(unique).digest('hex');

export interface Seeded {
  dir: string;
  /** Unique names in delivery order (message i+1 in a fresh session). */
  uniques: string[];
}

export interface SeedOptions {
  /** 'new' (default, not yet seen by any session) or 'cur' (with ":2,"). */
  sub?: 'new' | 'cur';
  /** Put S= and W= into the names (default true). */
  sizes?: boolean;
  /** Override the W= of message i (a wrong size from a foreign agent). */
  wrongW?: Map<number, number>;
  /** Seconds of the first name; message i gets base + i. */
  base?: number;
}

/** Chowns a tree to MAILUSER when running as root (files written by the test are root's). */
export function chownToMailUser(dir: string): void {
  if (!isRoot) return;
  fs.chownSync(dir, MAILUSER.uid, MAILUSER.gid);
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    fs.lchownSync(path.join(e.parentPath ?? e.path, e.name), MAILUSER.uid, MAILUSER.gid);
  }
}

const seeded: string[] = [];

/** Removes every maildir seedMaildir made (call from after(), once no worker uses them). */
export function removeSeeded(): void {
  for (const d of seeded.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

/** A new maildir (inside a fresh tmpdir) holding bodies, owned by MAILUSER. */
export function seedMaildir(bodies: Buffer[], o: SeedOptions = {}): Seeded {
  const parent = tmpdir('wrkrpop-');
  seeded.push(parent);
  const dir = path.join(parent, 'Maildir');
  for (const d of ['', 'cur', 'new', 'tmp']) fs.mkdirSync(path.join(dir, d), { mode: 0o700 });
  const uniques = addMessages(dir, bodies, o);
  chownToMailUser(dir);
  return { dir, uniques };
}

/** Writes more messages into an existing maildir; returns their unique names. */
export function addMessages(dir: string, bodies: Buffer[], o: SeedOptions = {}): string[] {
  const sub = o.sub ?? 'new';
  const base = o.base ?? 1_700_000_000;
  return bodies.map((body, i) => {
    const w = o.wrongW?.get(i) ?? wireOctets(body);
    const unique = `${base + i}.M${String(i % 1e6).padStart(6, '0')}P4242R${crypto.randomBytes(8).toString('hex')}.test` + (o.sizes === false ? '' : `,S=${body.length},W=${w}`);
    fs.writeFileSync(path.join(dir, sub, sub === 'cur' ? `${unique}:2,` : unique), body, { mode: 0o600 });
    return unique;
  });
}
