/**
 * Every source file says on its first line which identity runs it
 * ("// identity: ..."), and the line is true: a program's files name that
 * program's identity, and a library file names the identity of every
 * program that imports it (docs/architecture.md, "Processes").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from '../lib/util';

/** Who runs each program's code. */
const PROGRAMS: Record<string, string> = {
  popd: 'root',
  authpop: '_pop3d',
  wrkrpop: 'the mail user',
  mda: 'the recipient',
  popctl: 'the admin',
};
const IDENTITIES = Object.values(PROGRAMS);
/** The files that run as root before they drop to their program's identity. */
const ROOT_FIRST: Record<string, string> = {
  'authpop/main.ts': 'root until its config, then _pop3d',
  'authpop/configure.ts': 'root until its config, then _pop3d',
  'wrkrpop/main.ts': 'root until confined, then the mail user',
  'wrkrpop/confine.ts': 'root until confined, then the mail user',
};

interface Source {
  pkg: string;
  rel: string;
  header: string | null;
  imports: string[];
}

function sources(): Source[] {
  const out: Source[] = [];
  for (const pkg of fs.readdirSync(path.join(ROOT, 'packages'))) {
    const dir = path.join(ROOT, 'packages', pkg, 'src');
    if (!fs.existsSync(dir)) continue;
    for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.ts') && !x.endsWith('.d.ts'))) {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      const lines = text.split('\n');
      const first = lines[0].startsWith('#!') ? lines[1] : lines[0];
      const m = /^\/\/ identity: (.+)$/.exec(first);
      const imports = [...text.matchAll(/from '@popd\/([a-z]+)(?:\/([a-z0-9-]+))?'/g)].map((x) => (x[2] === undefined ? `${x[1]}/index.ts` : `${x[1]}/${x[2]}.ts`));
      out.push({ pkg, rel: `${pkg}/${f}`, header: m ? m[1] : null, imports });
    }
  }
  return out;
}

test('every source file starts with its identity, and a program file names its program', () => {
  const all = sources();
  assert.ok(all.length > 50, `found ${all.length} files`);
  const missing = all.filter((s) => s.header === null).map((s) => s.rel);
  assert.deepEqual(missing, [], 'files without an identity line');
  for (const s of all) {
    const want = ROOT_FIRST[s.rel] ?? PROGRAMS[s.pkg];
    if (want !== undefined) assert.equal(s.header, want, s.rel);
  }
});

test('a library file names the identity of every program that imports it, and nothing else', () => {
  const all = sources();
  const users = new Map<string, Set<string>>();
  for (const s of all) {
    if (PROGRAMS[s.pkg] === undefined) continue;
    for (const i of s.imports) users.set(i, (users.get(i) ?? new Set()).add(PROGRAMS[s.pkg]));
  }
  for (const s of all.filter((x) => PROGRAMS[x.pkg] === undefined)) {
    const named = s.header!.split(', ');
    for (const n of named) assert.ok(IDENTITIES.includes(n), `${s.rel}: unknown identity ${n}`);
    for (const u of users.get(s.rel) ?? []) assert.ok(named.includes(u), `${s.rel} is imported by code that runs as ${u}, but its first line says ${s.header}`);
  }
});
