// identity: _pop3d, the mail user
/**
 * POP3 command lines from a client, with one policy for the login phase
 * (authpop) and the mailbox phase (wrkrpop). A line is at most MAX_LINE
 * octets before its CRLF (or bare LF); a longer one is reported once, at its
 * end, and its bytes are dropped as they arrive, so memory stays bounded
 * whatever the client sends. Control bytes (NUL and the like) make a line
 * invalid rather than reaching a command parser. Pop3Lines turns those
 * events into what to do: a line, an -ERR answer, or the end of the session.
 */
import { MAX_DISCARD, MAX_LINE, MAX_LONG_LINES } from './params';

export { MAX_DISCARD, MAX_LINE, MAX_LONG_LINES };

export type LineEvent =
  | { kind: 'line'; line: Buffer }
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

  /** Feeds the next chunk, after whatever next() has not returned yet (nothing, when it last returned null). */
  push(chunk: Buffer): void {
    this.buf = this.off < this.buf.length ? Buffer.concat([this.buf.subarray(this.off), chunk]) : chunk;
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
    return { kind: 'line', line };
  }

  /** Takes every byte not yet returned as a line (bytes pipelined after a login, or sent in the clear before STLS's handshake). */
  take(): Buffer {
    const rest = Buffer.concat([...this.head, this.buf.subarray(this.off)]);
    this.buf = EMPTY;
    this.off = 0;
    this.head = [];
    this.headLen = 0;
    this.discarded = -1;
    return rest;
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

export type LineStep =
  | { t: 'line'; line: Buffer }
  /** Answer this and read on. */
  | { t: 'answer'; text: string }
  /** Answer this and end the session. */
  | { t: 'close'; text: string; why: string };

/** The policy: control bytes and over-long lines are answered; more than MAX_LONG_LINES over-long lines, or one endless line, end the session. */
export class Pop3Lines {
  private readonly splitter = new LineSplitter();
  private longLines = 0;

  /** Feeds the next chunk; call only after next() returned null. */
  push(chunk: Buffer): void {
    this.splitter.push(chunk);
  }

  take(): Buffer {
    return this.splitter.take();
  }

  next(): LineStep | null {
    const ev = this.splitter.next();
    if (ev === null) return null;
    switch (ev.kind) {
      case 'line':
        return { t: 'line', line: ev.line };
      case 'control':
        return { t: 'answer', text: '-ERR invalid character in command' };
      case 'toolong':
        if (++this.longLines <= MAX_LONG_LINES) return { t: 'answer', text: '-ERR line too long' };
        return { t: 'close', text: '-ERR too many over-long lines, closing', why: 'line flood' };
      case 'flood':
        return { t: 'close', text: '-ERR too many over-long lines, closing', why: 'line flood' };
    }
  }
}
