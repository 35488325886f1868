/** shared/trustedpath: a path resolved as the kernel does, and judged by who could replace its parts. Real directories and links. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { untrustedFor, UntrustedPath, walk } from '@popd/shared/trustedpath';

const me = { uid: process.getuid!(), gid: process.getgid!() };

test('walk: links on the way are resolved (relative, absolute, with ".."), the last one is refused', (t) => {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'popd-tp-')));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'a', 'b', 'Maildir'), { recursive: true });
  fs.symlinkSync('a/b', path.join(dir, 'rel'));
  fs.symlinkSync(path.join(dir, 'a'), path.join(dir, 'abs'));
  fs.symlinkSync('../a/b', path.join(dir, 'a', 'up'));
  fs.symlinkSync('b/Maildir', path.join(dir, 'a', 'last'));
  fs.symlinkSync('loop', path.join(dir, 'loop'));
  for (const p of ['rel/Maildir', 'abs/b/Maildir', 'a/up/Maildir', 'abs/up/Maildir']) {
    const w = walk(path.join(dir, p));
    assert.equal(w.real, path.join(dir, 'a', 'b', 'Maildir'), p);
    assert.ok(w.last?.isDirectory(), p);
  }
  assert.equal(walk(path.join(dir, 'rel', 'new')).last, null, 'a missing last component is fine');
  const code = (p: string): string => {
    try {
      walk(path.join(dir, p));
    } catch (err) {
      assert.ok(err instanceof UntrustedPath);
      return err.code;
    }
    return 'none';
  };
  assert.equal(code('a/last'), 'ELOOP');
  assert.equal(code('loop/x'), 'ELOOP');
  assert.equal(code('missing/Maildir'), 'ENOENT');
  fs.writeFileSync(path.join(dir, 'file'), '');
  assert.equal(code('file/Maildir'), 'ENOTDIR');
});

test('untrustedFor: a directory on the way that others may write is named; a sticky one is not, for entries of root or the uid', (t) => {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'popd-tp-')));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, 0o755);
  const md = path.join(dir, 'open', 'Maildir');
  fs.mkdirSync(md, { recursive: true });
  // Only directories up to dir are the machine's: judge the steps from dir on.
  const from = (p: string): ReturnType<typeof walk> => {
    const w = walk(p);
    return { ...w, steps: w.steps.filter((s) => s.entry.startsWith(dir + '/')) };
  };
  assert.equal(untrustedFor(from(md), me.uid, me.gid), null);
  fs.chmodSync(path.join(dir, 'open'), 0o777);
  assert.match(untrustedFor(from(md), me.uid, me.gid) ?? '', /open \(owner \d+, group \d+, mode 0777\) lets another user than uid \d+ replace .*open\/Maildir$/);
  fs.chmodSync(path.join(dir, 'open'), 0o1777);
  assert.equal(untrustedFor(from(md), me.uid, me.gid), null, 'sticky: only the owner of Maildir may rename it');
  assert.match(untrustedFor(from(path.join(dir, 'open', 'new')), me.uid, me.gid) ?? '', /replace .*open\/new$/, 'anyone may create what is not there yet');
  // Group write: fine for the uid's own group (as root, a group other than 0, which is always trusted).
  const group = me.uid === 0 ? 65534 : me.gid;
  fs.chownSync(md, me.uid, group);
  fs.chmodSync(md, 0o770);
  assert.equal(untrustedFor(from(md), me.uid, group), null);
  assert.match(untrustedFor(from(md), me.uid, group + 1) ?? '', /Maildir \(owner .*mode 0770\) lets another user than uid \d+ change what is in it/);
});
