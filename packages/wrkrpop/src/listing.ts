// identity: the mail user
/**
 * The body of LIST's and UIDL's multi-line answers: "n octets" or "n uidl"
 * for every message not deleted, written straight into the output's buffer
 * (no string or Buffer per line: 100,000 lines in a few ms, the UIDLs
 * copied from popcache's, or hashed where the open did not have them). The
 * output writes it in whole blocks as it fills, waiting for the client to
 * take each (which also gives other sessions their turn).
 */
import { Pacer } from '@popd/store/pacer';
import { Maildrop } from './maildrop';
import { TLS_RECORD } from '@popd/shared/params';
import { Output } from './output';

const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;
/** Longer than any line: a 10-digit number, a space, a 64-digit UIDL or a 16-digit octet count, CRLF. */
const MAX_LINE = 80;

/** Writes the decimal digits of v (a non-negative safe integer) at buf[at...]; returns the end. */
function writeDecimal(buf: Buffer, at: number, v: number): number {
  let digits = 1;
  for (let x = v; x >= 10; x = Math.floor(x / 10)) digits++;
  for (let i = at + digits - 1, x = v; i >= at; i--, x = Math.floor(x / 10)) buf[i] = 0x30 + (x % 10);
  return at + digits;
}

export async function writeListing(out: Output, box: Maildrop, kind: 'LIST' | 'UIDL'): Promise<void> {
  const pacer = new Pacer();
  let { buf, at } = out.room(TLS_RECORD);
  let last = at + TLS_RECORD - MAX_LINE;
  for (let n = 1; n <= box.total; n++) {
    if (box.isDeleted(n)) continue;
    if (at > last) {
      await out.commit(at);
      ({ buf, at } = out.room(TLS_RECORD));
      last = at + TLS_RECORD - MAX_LINE;
      if (pacer.due()) await pacer.yield();
    }
    at = writeDecimal(buf, at, n);
    buf[at++] = SP;
    at = kind === 'LIST' ? writeDecimal(buf, at, box.octetsOf(n)) : box.writeUidl(n, buf, at);
    buf[at++] = CR;
    buf[at++] = LF;
  }
  await out.commit(at);
}
