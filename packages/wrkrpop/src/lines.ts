/**
 * Splits the client's bytes into command lines. A line is at most MAX_LINE
 * octets before its CRLF (or bare LF); a longer one is reported once, at its
 * end, and its bytes are dropped as they arrive, so memory stays bounded
 * whatever the client sends. Control bytes (NUL and the like) make a line
 * invalid rather than reaching the command parser.
 */

/** RFC 2449 and docs/architecture.md, "Protocol": 255 octets plus CRLF. */
export const MAX_LINE = 255;
/** One over-long line this long is abuse, not a mistake: the session closes. */
export const MAX_DISCARD = 64 * 1024;

export type LineEvent =
  | { kind: 'line'; text: string }
  | { kind: 'toolong' }
  | { kind: 'control' }
  /** An over-long line passed MAX_DISCARD before its end. */
  | { kind: 'flood' };

const LF = 0x0a;
const CR = 0x0d;
const EMPTY = Buffer.alloc(0);

function hasControl(line: Buffer): boolean {
  for (let i = 0; i < line.length; i++) {
    const b = line[i];
    if (b < 0x20 || b === 0x7f) return true;
  }
  return false;
}

export class LineSplitter {
  private buf: Buffer = EMPTY;
  private off = 0;
  /** Start of the current line, when it spans chunks (never more than MAX_LINE + 1 bytes). */
  private head: Buffer[] = [];
  private headLen = 0;
  /** Bytes dropped of the current over-long line, or -1 when not discarding. */
  private discarded = -1;

  /** Feeds the next chunk; call only after next() returned null. */
  push(chunk: Buffer): void {
    this.buf = chunk;
    this.off = 0;
  }

  /** The next event from what was pushed, or null when more bytes are needed. */
  next(): LineEvent | null {
    const lf = this.buf.indexOf(LF, this.off);
    if (lf === -1) {
      this.keepRest();
      return this.discarded > MAX_DISCARD ? { kind: 'flood' } : null;
    }
    const piece = this.buf.subarray(this.off, lf);
    this.off = lf + 1;
    if (this.discarded >= 0) {
      this.discarded = -1;
      return { kind: 'toolong' };
    }
    let line = this.headLen === 0 ? piece : Buffer.concat([...this.head, piece]);
    this.head = [];
    this.headLen = 0;
    if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
    if (line.length > MAX_LINE) return { kind: 'toolong' };
    if (hasControl(line)) return { kind: 'control' };
    return { kind: 'line', text: line.toString('latin1') };
  }

  /** Keeps the unfinished end of the chunk, or only counts it once the line is too long. */
  private keepRest(): void {
    const rest = this.buf.subarray(this.off);
    this.buf = EMPTY;
    this.off = 0;
    if (rest.length === 0) return;
    if (this.discarded >= 0) {
      this.discarded += rest.length;
      return;
    }
    // MAX_LINE + 1 leaves room for the CR of a CRLF split across chunks.
    if (this.headLen + rest.length > MAX_LINE + 1) {
      this.discarded = this.headLen + rest.length;
      this.head = [];
      this.headLen = 0;
      return;
    }
    // A copy: the chunk may be a view of a buffer the stream reuses.
    this.head.push(Buffer.from(rest));
    this.headLen += rest.length;
  }
}
