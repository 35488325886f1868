// identity: the mail user, the recipient, the admin
/**
 * The wire form of a stored message: what RETR sends before dot-stuffing.
 *
 * Rule (the only one in the project): every LF not preceded by CR becomes
 * CRLF, an existing CRLF is kept, a lone CR is kept as it is, and a message
 * whose last byte is not LF gets a CRLF appended so that the terminating "."
 * stands on its own line. An empty message stays empty.
 *
 * WireSize counts what RETR sends before dot-stuffing (LIST's octets);
 * the worker's WireEdit (wrkrpop, in C) converts, by the same rule. The
 * unit tests hold both to one reference conversion.
 */

const LF = 0x0a;
const CR = 0x0d;

/** Counts the wire octets of a message fed in chunks. */
export class WireSize {
  private total = 0;
  /** What the next chunk must know of this one. */
  private prevCR = false;
  private lastByte = -1;

  update(buf: Buffer): void {
    let bare = 0;
    for (let i = buf.indexOf(LF); i !== -1; i = buf.indexOf(LF, i + 1)) if (!(i === 0 ? this.prevCR : buf[i - 1] === CR)) bare++;
    if (buf.length > 0) {
      this.prevCR = buf[buf.length - 1] === CR;
      this.lastByte = buf[buf.length - 1];
    }
    this.total += buf.length + bare;
  }

  /** The final count, including the end rule. */
  digest(): number {
    return this.total + (this.lastByte !== -1 && this.lastByte !== LF ? 2 : 0);
  }
}

/** Wire size of a whole message held in memory. */
export function wireSizeOf(buf: Buffer): number {
  const s = new WireSize();
  s.update(buf);
  return s.digest();
}
