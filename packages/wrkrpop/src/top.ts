// identity: the mail user
/**
 * TOP msg n on the wire form of a message: the header lines, the blank line
 * that ends them, then n lines of the body. A message without a blank line,
 * or with fewer body lines, is sent whole.
 */

const LF = 0x0a;

export class TopLimiter {
  private inBody = false;
  private bodyLines = 0;
  /** Bytes of the current line seen in earlier chunks. */
  private lineLen = 0;
  private done = false;

  constructor(private readonly lines: number) {}

  /** Whether the cut was reached: nothing more is to be read or sent. */
  get finished(): boolean {
    return this.done;
  }

  /** The part of a wire-form chunk to send. */
  take(chunk: Buffer): Buffer {
    if (this.done) return chunk.subarray(0, 0);
    let start = 0;
    for (let i = chunk.indexOf(LF); i !== -1; i = chunk.indexOf(LF, i + 1)) {
      const len = this.lineLen + (i - start);
      this.lineLen = 0;
      start = i + 1;
      if (!this.inBody) {
        // In the wire form every LF follows a CR: a line of one byte before LF is the blank line.
        if (len !== 1) continue;
        this.inBody = true;
        if (this.lines > 0) continue;
      } else if (++this.bodyLines < this.lines) continue;
      this.done = true;
      return chunk.subarray(0, i + 1);
    }
    this.lineLen += chunk.length - start;
    return chunk;
  }
}
