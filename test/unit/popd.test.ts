/** popd in-process: addresses, connection caps, the password check on a bcrypt thread, children's stderr lines. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import bcrypt from 'bcryptjs';
import { childLines } from '@popd/popd/child-stderr';
import { ConnectionCaps } from '@popd/popd/connection-caps';
import { parseAddress } from '@popd/popd/options';
import { BcryptPool } from '@popd/popd/bcryptpool';
import { dummySalt, Verifier } from '@popd/popd/verifier';
import { MAX_CHILD_LINE } from '@popd/shared/params';

test('addresses: IPv4 or [IPv6], optional port', () => {
  assert.deepEqual(parseAddress('127.0.0.1', 995), { host: '127.0.0.1', port: 995 });
  assert.deepEqual(parseAddress('[::1]:110', 995), { host: '::1', port: 110 });
  for (const bad of ['::1', 'localhost', '1.2.3.4:0', '1.2.3.4:70000', '[1.2.3.4]', '1.2.3', '']) assert.equal(parseAddress(bad, 995), null, bad);
});

test('limits: global and per network, freed on close; the oldest that may go, of a network or of all', () => {
  const l = new ConnectionCaps(3, 2);
  l.add('a', '1.1.1.1');
  l.add('b', '1.1.1.1');
  assert.equal(l.admit('1.1.1.1'), 'network');
  assert.equal(l.admit('2.2.2.2'), 'ok');
  l.add('c', '2.2.2.2');
  assert.equal(l.admit('3.3.3.3'), 'total');
  assert.equal(l.admit('1.1.1.1'), 'network', 'the network first: room made there is room in all');
  assert.equal(l.netOf('c'), '2.2.2.2');
  const all = (): boolean => true;
  assert.equal(l.oldest('2.2.2.2', all), 'c');
  assert.equal(l.oldest(null, all), 'a');
  assert.equal(l.oldest(null, (id) => id !== 'a'), 'b');
  assert.equal(l.oldest('1.1.1.1', (id) => id === 'c'), null);
  assert.equal(l.oldest('3.3.3.3', all), null);
  l.remove('a');
  l.remove('a');
  assert.equal(l.admit('1.1.1.1'), 'ok');
  assert.equal(l.size, 2);
  assert.equal(l.oldest('1.1.1.1', all), 'b');
});

test('verifier on a bcrypt thread: right, wrong, unknown user, $2y$, a full queue, a refused salt', async () => {
  const hash = bcrypt.hashSync('pw', 4);
  const salt = dummySalt([hash]);
  assert.match(salt, /^\$2b\$04\$/);
  const pool = new BcryptPool(1);
  const v = new Verifier(1, 1, (pass, s) => pool.hash(pass, s));
  assert.equal(await v.check(hash, salt, 'pw'), true);
  assert.equal(await v.check(hash, salt, 'pW'), false);
  assert.equal(await v.check(undefined, salt, 'pw'), false);
  assert.equal(await v.check('$2y$' + hash.slice(4), salt, 'pw'), true);
  const three = [v.check(hash, salt, 'pw'), v.check(hash, salt, 'pw'), v.check(hash, salt, 'pw')];
  assert.deepEqual(await Promise.all(three), [true, true, null]);
  assert.equal(await v.check('$2b$04$' + '!'.repeat(53), salt, 'pw'), false);
  assert.equal(await v.check(hash, salt, 'pw'), true, 'the thread still works');
  await pool.close();
});

test('verifier: unknown users and every failure cost the work of the most expensive hash in authtab', async () => {
  const cost = (h: string): number => Number(h.slice(4, 6));
  const mixed = [bcrypt.hashSync('a', 4), bcrypt.hashSync('b', 4), bcrypt.hashSync('c', 4), `$2y$13$${'a'.repeat(53)}`];
  const top = dummySalt(mixed);
  assert.match(top, /^\$2b\$13\$[./A-Za-z0-9]{22}$/, 'the majority cost is 4, the maximum 13');
  assert.equal(bcrypt.getRounds(top), 13, 'bcryptjs takes it as a salt');
  assert.match(dummySalt([]), /^\$2b\$10\$/);
  // A real bcrypt thread, with the salts of each hash it computes recorded.
  const hash = bcrypt.hashSync('pw', 4);
  const salt = dummySalt([hash, bcrypt.hashSync('other', 7)]);
  const pool = new BcryptPool(1);
  const costs: number[] = [];
  const v = new Verifier(1, 1, (pass, s) => {
    costs.push(cost(s));
    return pool.hash(pass, s);
  });
  const work = async (h: string | undefined, pass: string, expect: boolean): Promise<number> => {
    costs.length = 0;
    assert.equal(await v.check(h, salt, pass), expect);
    return costs.reduce((sum, c) => sum + 2 ** c, 0);
  };
  assert.equal(await work(undefined, 'pw', false), 2 ** 7, 'an unknown user');
  assert.equal(await work(hash, 'wrong', false), 2 ** 7, 'a cost-4 user who failed');
  assert.deepEqual(costs, [4, 4, 5, 6]);
  assert.equal(await work(hash, 'pw', true), 2 ** 4, 'a success is not padded');
  await pool.close();
});

test('childLines: lines of a child\'s stderr, each cut to a bounded length, however long the line', async () => {
  const input = new PassThrough();
  const lines: string[] = [];
  childLines(input, (l) => lines.push(l));
  input.write('first\nsec');
  input.write('ond\n');
  for (let i = 0; i < 64; i++) input.write('x'.repeat(64 * 1024)); // 4 MB without a newline
  input.write('y\nafter\nno newline at the end');
  input.end();
  await new Promise((r) => input.once('end', r));
  assert.deepEqual(lines, ['first', 'second', `${'x'.repeat(MAX_CHILD_LINE)} [line cut]`, 'after', 'no newline at the end']);
});
