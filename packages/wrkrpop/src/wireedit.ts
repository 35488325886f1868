// identity: the mail user
/**
 * What RETR and TOP send of a stored message: its wire form (the rule of
 * store/wire.ts: every LF not preceded by CR becomes CRLF, a lone CR stays,
 * a message that does not end a line gets CRLF) and dot-stuffing (RFC 1939,
 * 3: a line that starts with "." gets one more, and "." CRLF ends the
 * answer), chunk by chunk, in place, in C (src/wireedit.c). The same edits
 * in JavaScript, one copyWithin per inserted byte, took 30 us of every 50 KB
 * message, the largest part of the worker's CPU in pipelined RETR; in C, 5.
 * store/wire.ts's WireSize counts the octets this sends before stuffing
 * (LIST's); the unit tests hold the two and plain-rule oracles together.
 */
import path from 'node:path';

interface Native {
  edit(buf: Buffer, start: number, end: number, state: Uint32Array): number;
}

const native = require(path.join(__dirname, '..', 'build', 'Release', 'wireedit.node')) as Native;

const TERMINATOR = Buffer.from('.\r\n');
/** The wire form's end rule (CRLF) before the terminator, for a message that does not end a line. */
const CRLF_TERMINATOR = Buffer.from('\r\n.\r\n');

export class WireEdit {
  /** [the last chunk ended with CR, the next chunk starts a line (nothing yet, or the last ended with LF), "." inserted by the last edit] */
  private readonly state = new Uint32Array([0, 1, 0]);
  /** Octets of the wire form so far, before dot-stuffing: what LIST should have said. */
  wireOctets = 0;

  /**
   * Edits the chunk buf[start, end) where it lies and returns its new end;
   * buf needs end - start more octets of room after end (each byte read
   * causes at most one insertion: a CR before an LF, a "." before a ".").
   */
  edit(buf: Buffer, start: number, end: number): number {
    const to = native.edit(buf, start, end, this.state);
    this.wireOctets += to - start - this.state[2];
    return to;
  }

  /** What ends the answer after the last chunk, or after TOP's cut (which ends a line). */
  end(cut = false): Buffer {
    if (cut || this.state[1] === 1) return TERMINATOR;
    this.wireOctets += 2;
    return CRLF_TERMINATOR;
  }
}
