/**
 * A small POP3 client for tests, over any duplex stream (a socketpair end, a
 * TCP or TLS socket). It reads only when asked for a reply, so a test can
 * play a slow reader: unread replies stay in the socket and push back on the
 * server. Multi-line replies are unstuffed; a line that starts with a single
 * "." that is not the terminator is a server bug and throws.
 */
import { Duplex } from 'node:stream';

const EMPTY = Buffer.alloc(0);
const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;
const LF_DOT = Buffer.from('\n.');

export class Pop3Client {
  private pending: Buffer = EMPTY;
  private ended = false;
  private error: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(readonly io: Duplex) {
    const poke = (): void => {
      const w = this.wake;
      this.wake = null;
      w?.();
    };
    io.on('readable', poke);
    io.on('end', () => {
      this.ended = true;
      poke();
    });
    io.on('close', () => {
      this.ended = true;
      poke();
    });
    io.on('error', (err) => {
      this.error = err;
      poke();
    });
  }

  /** Sends one command line (CRLF added). */
  send(line: string): void {
    this.io.write(line + '\r\n');
  }

  /** Sends bytes as they are (to test line handling). */
  sendRaw(bytes: Buffer | string): void {
    this.io.write(bytes);
  }

  /** Pulls one more chunk into pending; false at end of stream. */
  private async more(): Promise<boolean> {
    for (;;) {
      const c = this.io.read() as Buffer | null;
      if (c !== null) {
        this.pending = this.pending.length === 0 ? c : Buffer.concat([this.pending, c]);
        return true;
      }
      if (this.error) throw this.error;
      if (this.ended || this.io.readableEnded || this.io.destroyed) return false;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** The next line, without its CRLF (latin1). Throws at end of stream. */
  async line(): Promise<string> {
    for (;;) {
      const lf = this.pending.indexOf(LF);
      if (lf !== -1) {
        if (lf === 0 || this.pending[lf - 1] !== CR) throw new Error(`reply line without CRLF: ${JSON.stringify(this.pending.subarray(0, lf + 1).toString('latin1'))}`);
        const text = this.pending.subarray(0, lf - 1).toString('latin1');
        this.pending = this.pending.subarray(lf + 1);
        return text;
      }
      if (!(await this.more())) throw new Error(`connection closed${this.pending.length ? ' inside a line' : ''}`);
    }
  }

  /** Sends a command and returns its status line. */
  async cmd(line: string): Promise<string> {
    this.send(line);
    return this.line();
  }

  /** The body of a multi-line reply (after its status line), unstuffed, CRLFs kept, without the terminator. */
  async multi(): Promise<Buffer> {
    const parts: Buffer[] = [];
    let atLineStart = true;
    for (;;) {
      if (atLineStart) {
        // Decide about a leading dot: it needs up to three bytes.
        while (this.pending.length < 3 && !(this.pending.length > 0 && this.pending[0] !== DOT)) {
          if (!(await this.more())) throw new Error('connection closed inside a multi-line reply');
        }
        if (this.pending[0] === DOT) {
          if (this.pending[1] === CR && this.pending[2] === LF) {
            this.pending = this.pending.subarray(3);
            return Buffer.concat(parts);
          }
          if (this.pending[1] !== DOT) throw new Error('line starting with an unstuffed "."');
          this.pending = this.pending.subarray(1);
        }
        atLineStart = false;
      }
      const at = this.pending.indexOf(LF_DOT);
      if (at !== -1) {
        parts.push(this.pending.subarray(0, at + 1));
        this.pending = this.pending.subarray(at + 1);
        atLineStart = true;
        continue;
      }
      // Keep a final LF back: the next chunk may start with a dot.
      const keep = this.pending.length > 0 && this.pending[this.pending.length - 1] === LF ? 1 : 0;
      parts.push(this.pending.subarray(0, this.pending.length - keep));
      this.pending = this.pending.subarray(this.pending.length - keep);
      if (!(await this.more())) throw new Error('connection closed inside a multi-line reply');
    }
  }

  /** Status line and, if it is +OK, the body. */
  async reply(multiline: boolean): Promise<{ status: string; body: Buffer | null }> {
    const status = await this.line();
    return { status, body: multiline && status.startsWith('+OK') ? await this.multi() : null };
  }

  /** Everything left until the server closes. */
  async rest(): Promise<Buffer> {
    while (await this.more());
    const r = this.pending;
    this.pending = EMPTY;
    return r;
  }
}
