/** The wire rule, unique names and the popcache format, against independent reference implementations. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { WireSize, wireSizeOf } from '@popd/store/wire';
import { curName, escapedHost, isSafeName, isSafeUniqueName, newBaseName, parseName, withSizes } from '@popd/store/uniquename';
import { PopcacheParser, parsePopcache, popcacheText, uidlOf } from '@popd/store/popcache';
import { INPUTS, referenceWire, referenceWireSize, sha256, splitAt } from '../lib/store';

function sizeOf(chunks: Buffer[]): number {
  const s = new WireSize();
  for (const c of chunks) s.update(c);
  return s.digest();
}

test('wire size equals the reference conversion\'s for every input, whole and split at every CR/LF and at random', () => {
  for (const { name, data } of INPUTS) {
    const ref = referenceWire(data);
    assert.equal(referenceWireSize(data), ref.length, `${name}: the two references agree`);
    assert.equal(sizeOf([data]), ref.length, `${name}: WireSize whole`);
    assert.equal(wireSizeOf(data), ref.length, `${name}: wireSizeOf`);
    // Cuts right before and after every CR and LF: a CRLF split across chunks is the hard case.
    const around: number[] = [];
    for (let i = 0; i < data.length; i++) if (data[i] === 0x0a || data[i] === 0x0d) around.push(i, i + 1);
    assert.equal(sizeOf(splitAt(data, around)), ref.length, `${name}: size split around CR/LF`);
    for (let round = 0; round < 5; round++) {
      const cuts = Array.from({ length: crypto.randomInt(1, 20) }, () => crypto.randomInt(0, data.length + 1));
      assert.equal(sizeOf([Buffer.alloc(0), ...splitAt(data, cuts), Buffer.alloc(0)]), ref.length, `${name}: random split size ${cuts}`);
    }
  }
});

test('wire rule: the chosen end rule and CR handling, spelled out, in the reference and in WireSize', () => {
  const cases: Array<[string, string]> = [
    ['', ''],
    ['a', 'a\r\n'],
    ['a\n', 'a\r\n'],
    ['a\r\n', 'a\r\n'],
    ['a\r', 'a\r\r\n'],
    ['\n', '\r\n'],
    ['\r\n\n', '\r\n\r\n'],
    ['x\n\ry', 'x\r\n\ry\r\n'],
  ];
  for (const [input, wire] of cases) {
    assert.equal(referenceWire(Buffer.from(input, 'latin1')).toString('latin1'), wire, JSON.stringify(input));
    assert.equal(sizeOf([Buffer.from(input, 'latin1')]), wire.length, JSON.stringify(input));
  }
  // A CR at the end of one chunk and LF at the start of the next is one CRLF, not a bare LF.
  assert.equal(sizeOf([Buffer.from('a\r'), Buffer.from('\nb\n')]), 'a\r\nb\r\n'.length);
});

test('unique names: maildir++ form, parsed back, safe, with consistent wall-clock microseconds', async () => {
  let prev = 0;
  for (let i = 0; i < 40; i++) {
    const before = Date.now();
    const base = newBaseName();
    const after = Date.now();
    assert.match(base, /^\d{10,}\.M\d{1,6}P\d+R[0-9a-f]{16}\.\S+$/);
    assert.ok(isSafeName(base) && !base.includes('/') && !base.includes(':'), base);
    const p = parseName(withSizes(base, 12, 14));
    assert.equal(p.size, 12);
    assert.equal(p.wsize, 14);
    assert.ok(p.time !== undefined && p.time > prev, 'strictly increasing within a process');
    prev = p.time;
    // Seconds and microseconds from one clock reading: within the wall-clock bracket (50 ms of slack for clock slew).
    assert.ok(p.time >= (before - 50) * 1000 && p.time <= (after + 50) * 1000, `${base}: ${p.time} not within [${before}, ${after}] ms`);
    await new Promise((r) => setTimeout(r, crypto.randomInt(1, 7)));
  }
  const names = new Set(Array.from({ length: 1000 }, () => newBaseName()));
  assert.equal(names.size, 1000);
});

test('unique names: hostname escaping keeps names safe; parseName reads flags and sizes only where well formed', () => {
  for (const host of ['a/b:c,d\\e', 'with space', 'tab\there', 'ünï.example', 'new\nline']) {
    const h = escapedHost(host);
    assert.ok(isSafeName(`1.M1P1R0.${h}`), `${host} -> ${h}`);
    assert.ok(!/[/:,\s]/.test(h), `${host} -> ${h}`);
  }
  assert.equal(escapedHost('mx/1:2'), 'mx\\0571\\0722');
  const p = parseName('1700000000.M5P1R2.host,S=10,W=12:2,ST');
  assert.deepEqual(p, { unique: '1700000000.M5P1R2.host,S=10,W=12', flags: 'ST', size: 10, wsize: 12, time: 1700000000000005 });
  assert.deepEqual(parseName('foreign-name'), { unique: 'foreign-name', flags: '' });
  assert.equal(parseName('1.host,S=x,W=1e3').wsize, undefined);
  assert.equal(curName('u', 'TSTS'), 'u:2,ST');
  for (const bad of ['', '.hidden', 'a/b', 'a b', 'x'.repeat(256), 'tab\t', 'ü']) assert.ok(!isSafeName(bad), JSON.stringify(bad));
});

test('popcache format: C-compatible lines; corrupt, truncated, wrong-uidl and duplicate lines are counted and skipped', () => {
  const a = '1700000000.M1P1R1.h,S=3,W=5';
  const b = '1700000001.M1P1R1.h,S=9,W=9';
  assert.equal(uidlOf(a), sha256(a));
  const good = [
    ...popcacheText([
      { name: a, octets: 5 },
      { name: b, octets: 9 },
    ]),
  ].join('');
  assert.equal(good, `${a} 5 ${sha256(a)}\n${b} 9 ${sha256(b)}\n`);
  assert.deepEqual(parsePopcache(Buffer.from(good)), { entries: new Map([[a, 5], [b, 9]]), bad: 0 });
  const corrupt = [
    `${a} 5 ${sha256(a)}`,
    'garbage',
    `${b} 9 ${'g'.repeat(64)}`, // not hex
    `${b} 09 ${sha256(b)}`, // leading zero
    `${b} -1 ${sha256(b)}`,
    `${b}  9 ${sha256(b)}`,
    `${b} 9 ${sha256(b).toUpperCase()}`,
    `${b}:2,S 9 ${sha256(b + ':2,S')}`, // a cur/ name, not a unique name
    `${a} 7 ${sha256(a)}`, // duplicate: the later line wins
    `${b} 9 ${sha256(b).slice(0, 30)}`, // truncated, and no final newline
  ].join('\n');
  const r = parsePopcache(Buffer.from(corrupt, 'latin1'));
  assert.deepEqual([...r.entries], [[a, 7]]);
  assert.equal(r.bad, 9);
  assert.deepEqual(parsePopcache(Buffer.from(`${b} 9 ${sha256(a)}\n`)), { entries: new Map(), bad: 1 }, 'wrong uidl');
});

/** A deterministic stream of strings over an alphabet that hits every branch of the name and line scanners. */
function* awkwardStrings(count: number, alphabet: string[], maxLen: number): Generator<string> {
  let x = 0x2545f491;
  const next = (n: number): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  for (let i = 0; i < count; i++) yield Array.from({ length: next(maxLen) }, () => alphabet[next(alphabet.length)]).join('');
}

test('parseName agrees with the regular-expression definition of the S=, W= and time fields', () => {
  const reference = (file: string): ReturnType<typeof parseName> => {
    const unique = file.split(':')[0];
    const info = file.includes(':') ? file.slice(file.indexOf(':') + 1) : '';
    const out: ReturnType<typeof parseName> = { unique, flags: info.startsWith('2,') ? info.slice(2) : '' };
    for (const m of unique.matchAll(/,([SW])=(\d{1,15})(?=,|$)/g)) out[m[1] === 'S' ? 'size' : 'wsize'] = Number(m[2]);
    const t = /^(\d{1,12})\.(?:[^.]*?M(\d{1,6}))?/.exec(unique);
    if (t) out.time = Number(t[1]) * 1e6 + (t[2] ? Number(t[2]) : 0);
    return out;
  };
  const alphabet = ['1', '0', '9', ',', 'S', 'W', '=', '.', 'M', ':', '2', 'x', ',S=', ',W=', '1234567890123456'];
  for (const s of awkwardStrings(50_000, alphabet, 24)) assert.deepEqual(parseName(s), reference(s), JSON.stringify(s));
});

test('isSafeUniqueName (bytes, no string made) is isSafeName without ":"', () => {
  const alphabet = ['a', '.', '/', ':', ' ', '\t', '\x7f', '\xfc', '~', '!', '-', 'x'.repeat(120)];
  for (const s of awkwardStrings(20_000, alphabet, 6)) {
    const b = Buffer.from(`<${s}>`, 'latin1');
    assert.equal(isSafeUniqueName(b, 1, b.length - 1), isSafeName(s) && !s.includes(':'), JSON.stringify(s));
  }
});

test('parsePopcache agrees with the regular-expression definition of a line', () => {
  const reference = (text: string): ReturnType<typeof parsePopcache> => {
    const entries = new Map<string, number>();
    const lines = text.split('\n');
    let bad = lines[lines.length - 1] === '' ? 0 : 1;
    for (const line of lines.slice(0, -1)) {
      const m = /^(\S+) (0|[1-9]\d{0,14}) ([0-9a-f]{64})$/.exec(line);
      if (!m || !isSafeName(m[1]) || m[1].includes(':') || sha256(m[1]) !== m[3]) {
        bad++;
        continue;
      }
      if (entries.has(m[1])) bad++;
      entries.set(m[1], Number(m[2]));
    }
    return { entries, bad };
  };
  // The longest valid name (255 octets) makes the longest valid line.
  const names = ['1.a', '2.b,S=1,W=2', 'c', 'd:2,', `9.${'n'.repeat(253)}`];
  const pieces = [...names.map((n) => `${n} 5 ${sha256(n)}`), ...names.map((n) => `${n} 0 ${sha256(n)}`), ` 5 ${sha256('')}`, `1.a 1234567890123456 ${sha256('1.a')}`, `1.a 05 ${sha256('1.a')}`, `1.a 5 ${sha256('1.a').toUpperCase()}`, `1.a 5 ${sha256('1.a').slice(9)}`, `1.a 5 ${sha256('c')}`, `1.a 5 ${'g'.repeat(64)}`, 'y'.repeat(600), ' ', '\n', '\n\n', '5', 'x'];
  let cut = 7;
  for (const s of awkwardStrings(20_000, pieces, 8)) {
    const want = reference(s);
    const data = Buffer.from(s, 'latin1');
    assert.deepEqual(parsePopcache(data), want, JSON.stringify(s));
    // Read in pieces into one reused buffer, as readPopcache does, cut anywhere (1 to 700 bytes): the same result.
    const p = new PopcacheParser();
    const scratch = Buffer.alloc(700);
    for (let at = 0; at < data.length; at += cut, cut = (cut * 31 + 17) % 700 || 1) {
      const n = data.copy(scratch, 0, at, at + cut);
      p.push(scratch.subarray(0, n));
      scratch.fill('x');
    }
    assert.deepEqual(p.end(), want, `in pieces: ${JSON.stringify(s)}`);
  }
});
