/** The man pages: mandoc lint clean, required sections, and options in step with each program's --help. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, ROOT, run } from '../lib/util';

const MAN = path.join(ROOT, 'man');
const PAGES = ['popd.8', 'popmda.8', 'popctl.8', 'authtab.5', 'usertab.5'];
const hasMandoc = spawnSync('mandoc', ['-V'], { stdio: 'ignore' }).error === undefined;

test('mandoc -T lint -W warning finds nothing', { skip: !hasMandoc && 'mandoc is not installed (Debian package mandoc)' }, () => {
  const r = spawnSync('mandoc', ['-T', 'lint', '-W', 'warning', ...PAGES.map((p) => path.join(MAN, p))], { encoding: 'utf8' });
  assert.equal(r.stdout + r.stderr, '');
  assert.equal(r.status, 0);
});

test('every page has EXAMPLES, FILES, SEE ALSO with smtpd.conf(5) and syslog.conf(5); section 8 has EXIT STATUS', () => {
  for (const p of PAGES) {
    const src = fs.readFileSync(path.join(MAN, p), 'utf8');
    for (const sh of ['EXAMPLES', 'FILES', 'SEE ALSO']) assert.match(src, new RegExp(`^\\.Sh ${sh}$`, 'm'), `${p}: ${sh}`);
    if (p.endsWith('.8')) assert.match(src, /^\.Sh EXIT STATUS$/m, `${p}: EXIT STATUS`);
    const seeAlso = src.slice(src.indexOf('.Sh SEE ALSO'));
    assert.match(seeAlso, /^\.Xr smtpd\.conf 5/m, `${p}: smtpd.conf(5)`);
    assert.match(seeAlso, /^\.Xr syslog\.conf 5/m, `${p}: syslog.conf(5)`);
  }
});

/** Options listed in --help output: "  -x, --long <arg>", "  -x arg" or "  --long". */
function helpOptions(help: string): Set<string> {
  const out = new Set<string>();
  for (const line of help.split('\n')) {
    const m = /^\s+(?:(-[A-Za-z0-9])\b(?:,\s*(--[a-z][\w-]*))?|(--[a-z][\w-]*))/.exec(line);
    if (!m) continue;
    for (const o of [m[1], m[2], m[3]]) if (o) out.add(o);
  }
  return out;
}

/** Options a page documents in its option lists: ".It Fl x ..." with any "Fl \-long" on the same line. */
function pageOptions(src: string): Set<string> {
  const out = new Set<string>();
  for (const line of src.split('\n')) {
    const m = /^\.It Fl ([A-Za-z0-9])\b/.exec(line);
    if (!m) continue;
    out.add(`-${m[1]}`);
    for (const l of line.matchAll(/Fl \\-([a-z][\w-]*)/g)) out.add(`--${l[1]}`);
  }
  return out;
}

async function help(bin: string, args: string[] = []): Promise<string> {
  const r = await run(bin, [...args, '--help']);
  assert.equal(r.status, 0, `${path.basename(bin)} ${args.join(' ')} --help: ${r.stderr}`);
  return r.stdout.toString();
}

function assertSameOptions(page: string, fromHelp: Set<string>): void {
  const documented = pageOptions(fs.readFileSync(path.join(MAN, page), 'utf8'));
  assert.ok(fromHelp.size > 0, 'no options parsed from --help');
  assert.deepEqual([...fromHelp].filter((o) => !documented.has(o)).sort(), [], `in --help but not in ${page}`);
  assert.deepEqual([...documented].filter((o) => !fromHelp.has(o)).sort(), [], `in ${page} but not in --help`);
}

test('popmda.8 documents exactly the options of popmda --help', async () => {
  assertSameOptions('popmda.8', helpOptions(await help(BIN.popmda)));
});

test('popctl.8 documents exactly the options of popctl and its commands', async () => {
  const all = helpOptions(await help(BIN.popctl));
  const commands = [...(await help(BIN.popctl)).matchAll(/^\s{2}(\w+)\b(?! \[command\])/gm)].map((m) => m[1]).filter((c) => c !== 'help');
  assert.deepEqual(commands.sort(), ['check', 'encrypt', 'import', 'reindex']);
  const src = fs.readFileSync(path.join(MAN, 'popctl.8'), 'utf8');
  for (const c of commands) {
    for (const o of helpOptions(await help(BIN.popctl, [c]))) all.add(o);
    assert.match(src, new RegExp(`^\\.It Cm ${c}\\b`, 'm'), `command ${c} is not described`);
  }
  assertSameOptions('popctl.8', all);
});

test('popd.8 documents exactly the options of popd --help', async (t) => {
  if (!fs.existsSync(BIN.popd)) {
    t.skip(`${path.relative(ROOT, BIN.popd)} is not built yet`);
    return;
  }
  assertSameOptions('popd.8', helpOptions(await help(BIN.popd)));
});
