/**
 * Byte-stuffing of a multi-line response (RFC 1939, 3): a line that starts
 * with "." gets one more "." in front, and "." CRLF ends the response. The
 * only implementation in the project; it works on chunks, carrying whether
 * the next chunk starts a line.
 */
import { insertBefore } from '@popd/shared/bytes';

const LF = 0x0a;
const DOT = 0x2e;
const LF_DOT = Buffer.from('\n.');
const TERMINATOR = Buffer.from('.\r\n');
/** Only when the body does not end a line (the wire form never does that). */
const CRLF_TERMINATOR = Buffer.from('\r\n.\r\n');

export class DotStuffer {
  private atLineStart = true;

  chunk(buf: Buffer): Buffer {
    if (buf.length === 0) return buf;
    const dots: number[] = [];
    if (this.atLineStart && buf[0] === DOT) dots.push(0);
    for (let i = buf.indexOf(LF_DOT); i !== -1; i = buf.indexOf(LF_DOT, i + 1)) dots.push(i + 1);
    this.atLineStart = buf[buf.length - 1] === LF;
    return insertBefore(buf, dots, DOT);
  }

  /** The end of the response. */
  end(): Buffer {
    return this.atLineStart ? TERMINATOR : CRLF_TERMINATOR;
  }
}
