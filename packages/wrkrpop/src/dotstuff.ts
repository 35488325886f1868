// identity: the mail user
/**
 * Byte-stuffing of a multi-line response (RFC 1939, 3): a line that starts
 * with "." gets one more "." in front, and "." CRLF ends the response. The
 * only implementation in the project; it works on chunks, in place,
 * carrying whether the next chunk starts a line.
 */
import { insertBefore } from '@popd/store/bytes';

const LF = 0x0a;
const DOT = 0x2e;
const LF_DOT = Buffer.from('\n.');
const TERMINATOR = Buffer.from('.\r\n');
/** Only when the body does not end a line (the wire form never does that). */
const CRLF_TERMINATOR = Buffer.from('\r\n.\r\n');

export class DotStuffer {
  private atLineStart = true;

  /**
   * Stuffs the chunk buf[start, end) where it lies; buf needs room for one
   * more byte per "." in it after end. Returns the new end.
   */
  stuff(buf: Buffer, start: number, end: number): number {
    if (end === start) return end;
    const dots: number[] = [];
    if (this.atLineStart && buf[start] === DOT) dots.push(0);
    const chunk = buf.subarray(start, end);
    for (let i = chunk.indexOf(LF_DOT); i !== -1; i = chunk.indexOf(LF_DOT, i + 1)) dots.push(i + 1);
    this.atLineStart = buf[end - 1] === LF;
    return insertBefore(buf, start, end, dots, DOT);
  }

  /** The end of the response. */
  end(): Buffer {
    return this.atLineStart ? TERMINATOR : CRLF_TERMINATOR;
  }
}
