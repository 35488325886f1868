// identity: the mail user, the recipient, the admin
/**
 * The wire form of a stored message: what RETR sends before dot-stuffing.
 *
 * Rule (the only one in the project): every LF not preceded by CR becomes
 * CRLF, an existing CRLF is kept, a lone CR is kept as it is, and a message
 * whose last byte is not LF gets a CRLF appended so that the terminating "."
 * stands on its own line. An empty message stays empty.
 *
 * WireForm converts; WireSize counts. Both walk the bytes with the same
 * scanner (bareLineFeeds) and the same end rule, so LIST's octets always
 * equal the bytes RETR sends.
 */
import { insertBefore } from './bytes';

const LF = 0x0a;
const CR = 0x0d;
const CRLF = Buffer.from('\r\n');

/** Carries what one chunk must know of the previous one. */
class WireScanner {
  protected prevCR = false;
  protected lastByte = -1;

  /** Offsets of the LFs in buf that need a CR inserted before them. */
  protected bareLineFeeds(buf: Buffer): number[] {
    const out: number[] = [];
    let i = buf.indexOf(LF);
    while (i !== -1) {
      const before = i === 0 ? this.prevCR : buf[i - 1] === CR;
      if (!before) out.push(i);
      i = buf.indexOf(LF, i + 1);
    }
    if (buf.length > 0) {
      this.prevCR = buf[buf.length - 1] === CR;
      this.lastByte = buf[buf.length - 1];
    }
    return out;
  }

  /** Whether the end rule appends a CRLF. */
  protected needsFinalNewline(): boolean {
    return this.lastByte !== -1 && this.lastByte !== LF;
  }
}

/** Counts the wire octets of a message fed in chunks. */
export class WireSize extends WireScanner {
  private total = 0;

  update(buf: Buffer): void {
    this.total += buf.length + this.bareLineFeeds(buf).length;
  }

  /** The final count, including the end rule. */
  digest(): number {
    return this.total + (this.needsFinalNewline() ? 2 : 0);
  }
}

/** Converts a message fed in chunks to its wire form, in place. */
export class WireForm extends WireScanner {
  /**
   * Converts the chunk buf[start, end) where it lies; buf needs room for
   * end - start more bytes after end (a chunk of bare LFs doubles). Returns
   * the new end.
   */
  convert(buf: Buffer, start: number, end: number): number {
    return insertBefore(buf, start, end, this.bareLineFeeds(buf.subarray(start, end)), CR);
  }

  /** Bytes to send after the last chunk. */
  end(): Buffer {
    return this.needsFinalNewline() ? CRLF : Buffer.alloc(0);
  }
}

/** Wire size of a whole message held in memory. */
export function wireSizeOf(buf: Buffer): number {
  const s = new WireSize();
  s.update(buf);
  return s.digest();
}
