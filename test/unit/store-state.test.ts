/** The record beside popcache (popcache.state) as text, the settle rule, and the time a unique name carries, against a regex. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { formatState, isSettled, parseState, runsOf, Stamp, State } from '@popd/store/state';
import { timeOf } from '@popd/store/uniquename';

const stamp = (n: bigint): Stamp => ({ dev: 2049n, ino: 1000n + n, mtimeNs: 1_795_000_000_123_456_789n + n, ctimeNs: 1_795_000_000_123_456_789n + n });

const sample: Omit<State, 'count'> = {
  cur: stamp(1n),
  curSettled: true,
  new: stamp(2n),
  newSettled: false,
  popcache: { size: 12_700_000, crc: 0xfffffffe },
  runs: [
    { count: 99_998, dir: 'cur', suffix: ':2,' },
    { count: 1, dir: 'cur', suffix: ':2,FRS' },
    { count: 1, dir: 'new', suffix: '' },
  ],
};

test('a record reads back as written, with the count of its runs; u64 stamps survive', () => {
  const big = { ...sample, cur: { dev: (1n << 64n) - 1n, ino: 0n, mtimeNs: 0n, ctimeNs: (1n << 63n) + 5n } };
  for (const s of [sample, big, { ...sample, runs: [] }]) {
    const text = formatState(s);
    assert.deepEqual(parseState(text), { ...s, count: s.runs.reduce((n, r) => n + r.count, 0) });
  }
  assert.equal(
    formatState(sample),
    'popd-state 1\ncur 2049 1001 1795000000123456790 1795000000123456790 settled\nnew 2049 1002 1795000000123456791 1795000000123456791 unsettled\n' +
      'popcache 12700000 4294967294\n99998 cur :2,\n1 cur :2,FRS\n1 new\nend\n',
  );
});

test('anything but a record as formatState writes it is refused', () => {
  const good = formatState(sample);
  const bad = [
    '',
    good.slice(0, -1),
    good + 'x\n',
    good.replace('popd-state 1', 'popd-state 2'),
    good.replace('unsettled', 'maybe'),
    good.replace(' settled\n', '\n'),
    good.replace(/^cur 2049/m, 'cur 02049'),
    good.replace(/^cur 2049/m, 'cur -2049'),
    good.replace(/^cur 2049/m, `cur ${1n << 64n}`),
    good.replace('4294967294', '4294967296'),
    good.replace('12700000', String(2 ** 53)),
    good.replace('99998 cur', '0 cur'),
    good.replace('99998 cur', '099998 cur'),
    good.replace('99998 cur', '1000000000 cur'),
    good.replace('1 new', '1 tmp'),
    good.replace(':2,FRS', ':2,F/RS'),
    good.replace(':2,FRS', '2,FRS'),
    good.replace(':2,FRS', ':2, FRS'),
    good.replace(':2,FRS', `:${'x'.repeat(255)}`),
    good.replace(/\n/g, '\r\n'),
    good.replace('\nend\n', '\n'),
  ];
  for (const text of bad) assert.equal(parseState(text), null, JSON.stringify(text.slice(0, 300)));
});

test('runs: one per stretch of messages in one directory with one suffix', () => {
  const m = (unique: string, dir: 'cur' | 'new', file: string) => ({ unique, dir, file });
  assert.deepEqual(runsOf([]), []);
  assert.deepEqual(
    runsOf([m('a', 'cur', 'a:2,'), m('b', 'cur', 'b:2,'), m('c', 'cur', 'c:2,S'), m('d', 'new', 'd'), m('e', 'new', 'e'), m('f', 'cur', 'f:2,S'), m('g', 'cur', 'g')]),
    [
      { count: 2, dir: 'cur', suffix: ':2,' },
      { count: 1, dir: 'cur', suffix: ':2,S' },
      { count: 2, dir: 'new', suffix: '' },
      { count: 1, dir: 'cur', suffix: ':2,S' },
      { count: 1, dir: 'cur', suffix: '' },
    ],
  );
});

test('settled: mtime and ctime both older than the listing by the margin, to the nanosecond', () => {
  const since = 1_795_000_010_000_000_000n;
  const at = (mtimeNs: bigint, ctimeNs = mtimeNs): Stamp => ({ dev: 1n, ino: 1n, mtimeNs, ctimeNs });
  assert.equal(isSettled(at(since - 2_000_000_001n), since), true);
  assert.equal(isSettled(at(since - 2_000_000_000n), since), false, 'exactly the margin');
  assert.equal(isSettled(at(since - 5_000_000_000n, since - 1n), since), false, 'a recent ctime (chmod, a utimes() that set mtime back)');
  assert.equal(isSettled(at(since + 1_000_000_000n), since), false, 'a stamp from a clock ahead of ours');
  assert.equal(isSettled(at(since - 1n), since, 0), true);
  assert.equal(isSettled(at(since), since, 0), false, 'the same tick as the listing');
});

test('timeOf finds what the regex of the maildir++ name finds', () => {
  const TIME = /^(\d{1,12})\.(?:[^.]*?M(\d{1,6}))?/;
  const byRegex = (u: string): number | undefined => {
    const t = TIME.exec(u);
    return t ? Number(t[1]) * 1e6 + (t[2] ? Number(t[2]) : 0) : undefined;
  };
  const fixed = [
    '1700000000.M123456P42R0a.host',
    '1700000000.M1234567P42.host',
    '1700000000.P42M.x',
    '1700000000.P42MxM77.host',
    '1700000000.P42.M5.host',
    '1700000000.',
    '1700000000',
    '999999999999.M999999.h',
    '1234567890123.M1.h',
    '0.M0.h',
    '.M5.h',
    'abc.M5.h',
    '17e8.M5.h',
    '1700000000.M.h',
    '1700000000.RM0012P',
  ];
  const alphabet = '0123456789.MPR,=:x';
  const random = Array.from({ length: 20_000 }, () => {
    const len = 1 + crypto.randomInt(30);
    let s = crypto.randomInt(2) ? String(crypto.randomInt(1, 2 ** 40)) + '.' : '';
    for (let i = 0; i < len; i++) s += alphabet[crypto.randomInt(alphabet.length)];
    return s;
  });
  for (const u of [...fixed, ...random]) assert.equal(timeOf(u), byRegex(u), u);
});
