/**
 * Splits client bytes into POP3 lines. A line is at most 255 octets plus
 * CRLF (a bare LF is accepted as the end of a line); anything longer is
 * reported, never buffered without bound.
 */
export const MAX_LINE = 255;

export type Next = { line: Buffer } | { tooLong: true } | null;

export class LineBuffer {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** The next complete line without its line end, a too-long report, or null when more bytes are needed. */
  next(): Next {
    const lf = this.buf.indexOf(0x0a);
    // Without LF yet, one more octet may be the CR of a full-length line.
    if (lf < 0) return this.buf.length > MAX_LINE + 1 ? { tooLong: true } : null;
    const end = lf > 0 && this.buf[lf - 1] === 0x0d ? lf - 1 : lf;
    if (end > MAX_LINE) return { tooLong: true };
    const line = this.buf.subarray(0, end);
    this.buf = this.buf.subarray(lf + 1);
    return { line };
  }

  /** Takes whatever is buffered (bytes pipelined after the login line, or discarded after STLS). */
  take(): Buffer {
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }
}
