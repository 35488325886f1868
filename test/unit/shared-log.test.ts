/** shared/log in-process: what reaches the log is printable and lossless. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { escapeLog } from '@popd/shared/log';

test('escapeLog: printable ASCII stays, everything else is escaped without loss', () => {
  assert.equal(escapeLog('user alice from 127.0.0.1'), 'user alice from 127.0.0.1');
  assert.equal(escapeLog('a\\x0a\nb'), 'a\\\\x0a\\x0ab', 'a backslash cannot pass for an escape');
  assert.equal(escapeLog('\u2028\u010a\x7f\u{1F600}\x1b[2J'), '\\u{2028}\\u{10a}\\x7f\\u{1f600}\\x1b[2J');
  assert.doesNotMatch(escapeLog(String.fromCharCode(...Array.from({ length: 0x300 }, (_, i) => i))), /[^\x20-\x7e]/);
});
