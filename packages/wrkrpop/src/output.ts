/**
 * Everything the worker says goes through one Output: small answers are
 * gathered so that pipelined commands cost few writes, and every write that
 * fills the stream's buffer waits for 'drain' before the engine goes on
 * (backpressure towards the client: a reader that stalls stalls the worker,
 * not its memory).
 */
import { Duplex } from 'node:stream';

/** Gathered answers are written once they reach this size, or before the engine waits for input. */
const GATHER = 16 * 1024;

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
  private gathered: Buffer[] = [];
  /** Lines not yet in gathered: a listing of 100,000 lines becomes a few Buffers, not one each. */
  private text = '';
  private gatheredLen = 0;
  /** Octets handed to the stream. */
  sent = 0;

  constructor(
    private readonly io: Duplex,
    /** Called whenever the client took data (for the idle timer). */
    private readonly onProgress: () => void,
  ) {}

  /** One line of an answer; CRLF is added. */
  async line(text: string): Promise<void> {
    this.text += text + '\r\n';
    this.gatheredLen += text.length + 2;
    if (this.gatheredLen >= GATHER) await this.flush();
  }

  private gatherText(): void {
    if (this.text === '') return;
    this.gathered.push(Buffer.from(this.text, 'latin1'));
    this.text = '';
  }

  /** A chunk of message data. */
  async data(buf: Buffer): Promise<void> {
    if (buf.length === 0) return;
    this.gatherText();
    if (buf.length < GATHER) {
      this.gathered.push(buf);
      this.gatheredLen += buf.length;
      if (this.gatheredLen >= GATHER) await this.flush();
      return;
    }
    await this.flush();
    await this.write(buf);
  }

  async flush(): Promise<void> {
    if (this.gatheredLen === 0) return;
    this.gatherText();
    const b = this.gathered.length === 1 ? this.gathered[0] : Buffer.concat(this.gathered, this.gatheredLen);
    this.gathered = [];
    this.gatheredLen = 0;
    await this.write(b);
  }

  private async write(b: Buffer): Promise<void> {
    if (this.io.destroyed || this.io.writableEnded) throw new StreamClosed();
    this.sent += b.length;
    if (!this.io.write(b)) {
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
