// identity: the mail user
/**
 * Everything the worker says goes through one Output, gathered in one buffer
 * that answers are written straight into (lines, listings, and message data
 * read from the file into it and edited in place; see retr.ts). It is
 * written when the engine is about to wait for the client's next command,
 * so a status line, a message and its "." leave in one write, and pipelined
 * answers share writes; and, while more than a block is gathered, in whole
 * multiples of 16 KB, so that the relay can fill every TLS record. Every
 * write that fills the stream's buffer waits for 'drain' before the engine
 * goes on (backpressure towards the client: a reader that stalls stalls the
 * session, not its memory).
 */
import net from 'node:net';
import { Duplex } from 'node:stream';
import { OUTPUT_BLOCK, TLS_RECORD } from '@popd/shared/params';

/** Room for a block of message data that the wire form and dot-stuffing may double. */
const CAPACITY = 2 * OUTPUT_BLOCK;

const CR = 0x0d;
const LF = 0x0a;

export class StreamClosed extends Error {
  code = 'ECLOSED';
  constructor() {
    super('connection closed');
  }
}

function waitDrain(io: Duplex): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      io.off('drain', onDrain);
      io.off('close', onClose);
      io.off('error', done);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = (): void => done();
    const onClose = (): void => done(new StreamClosed());
    io.on('drain', onDrain);
    io.on('close', onClose);
    io.on('error', done);
  });
}

export class Output {
  private buf = Buffer.allocUnsafe(CAPACITY);
  /** buf[from, to) is gathered, not yet handed to the stream; what lies before from is the stream's until written. */
  private from = 0;
  private to = 0;
  /**
   * Whether buf may be written over once the stream holds nothing unwritten: a socket is done with a
   * chunk when its write completes; other streams (a PassThrough) may keep the chunk itself.
   */
  private readonly reusable: boolean;
  /** Octets handed to the stream. */
  sent = 0;

  constructor(
    private readonly io: Duplex,
    /** Called whenever the client took data (for the idle timer). */
    private readonly onProgress: () => void,
  ) {
    this.reusable = io instanceof net.Socket;
  }

  /** Octets gathered; always less than OUTPUT_BLOCK between calls. */
  get pending(): number {
    return this.to - this.from;
  }

  /**
   * Room for n more octets after those gathered: write them into buf from
   * at on, then hand the new end to commit(). Moves what is gathered to the
   * start of the buffer, or of a new one, when the room is not there.
   */
  room(n: number): { buf: Buffer; at: number } {
    if (this.to + n > this.buf.length) {
      const pending = this.pending;
      if (this.reusable && this.io.writableLength === 0 && pending + n <= this.buf.length) {
        // Everything written has left the process: the whole buffer is free again.
        this.buf.copyWithin(0, this.from, this.to);
      } else {
        const next = Buffer.allocUnsafe(Math.max(CAPACITY, pending + n));
        this.buf.copy(next, 0, this.from, this.to);
        this.buf = next;
      }
      this.from = 0;
      this.to = pending;
    }
    return { buf: this.buf, at: this.to };
  }

  /** The octets up to end, in the buffer room() returned, are gathered; once a block is, its whole records are written. */
  async commit(end: number): Promise<void> {
    this.to = end;
    const pending = this.pending;
    if (pending >= OUTPUT_BLOCK) await this.write(pending - (pending % TLS_RECORD));
  }

  /** One line of an answer; CRLF is added. */
  async line(text: string): Promise<void> {
    const { buf, at } = this.room(text.length + 2);
    let end = at + buf.write(text, at, 'latin1');
    buf[end++] = CR;
    buf[end++] = LF;
    await this.commit(end);
  }

  /** Bytes as they are. */
  async bytes(b: Buffer): Promise<void> {
    const { buf, at } = this.room(b.length);
    await this.commit(at + b.copy(buf, at));
  }

  /** Writes everything gathered. */
  async flush(): Promise<void> {
    if (this.pending > 0) await this.write(this.pending);
  }

  private async write(n: number): Promise<void> {
    if (this.io.destroyed || this.io.writableEnded) throw new StreamClosed();
    const b = this.buf.subarray(this.from, this.from + n);
    this.from += n;
    this.sent += n;
    // false with nothing left unwritten: the socket took it all at once, and there is nothing to wait for.
    if (!this.io.write(b) && this.io.writableLength > 0) {
      await waitDrain(this.io);
      this.onProgress();
    }
  }

  /** Flushes, ends the stream and waits until the data left the process. */
  async end(): Promise<void> {
    await this.flush();
    if (this.io.destroyed) return;
    await new Promise<void>((resolve) => {
      this.io.once('close', resolve);
      this.io.once('finish', resolve);
      this.io.end();
    });
  }
}
