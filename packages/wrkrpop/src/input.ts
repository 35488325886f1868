// identity: the mail user
/**
 * Command lines from the client, pulled one at a time: the stream is read
 * only when the engine asks for the next line, so pipelined input waits in
 * the stream's bounded buffer and the socket (backpressure towards the
 * client) while an answer is being sent.
 * The stream is read with read() on 'readable' rather than through its async
 * iterator: a client fetching one message at a time wakes the worker once
 * per command, and the iterator's promise machinery cost more per wake-up
 * than the command's own parsing.
 */
import { Duplex } from 'node:stream';
import { LineStep, Pop3Lines } from '@popd/shared/pop3lines';
import { StreamClosed } from './output';

export class LineInput {
  private readonly lines = new Pop3Lines();
  private ended = false;
  /** The stream's error, or StreamClosed when it was destroyed before its end. */
  private failure: Error | null = null;
  /** Resolves the wait in next(), when there is one. */
  private wake: (() => void) | null = null;

  constructor(private readonly io: Duplex) {
    const wake = (): void => {
      const w = this.wake;
      this.wake = null;
      w?.();
    };
    io.on('readable', wake);
    io.on('end', () => {
      this.ended = true;
      wake();
    });
    io.on('error', (err: Error) => {
      this.failure ??= err;
      wake();
    });
    io.on('close', () => {
      if (!this.ended) this.failure ??= new StreamClosed();
      wake();
    });
  }

  /**
   * The next line, answer or end, or null at end of input. beforeWait runs
   * when no complete line is buffered, before waiting for the client.
   */
  async next(beforeWait: () => Promise<void>): Promise<LineStep | null> {
    let waited = false;
    for (;;) {
      const step = this.lines.next();
      if (step) return step;
      const chunk = this.io.read() as Buffer | null;
      if (chunk !== null) {
        this.lines.push(chunk);
        continue;
      }
      if (this.failure) throw this.failure;
      if (this.ended) return null;
      if (!waited) {
        // beforeWait may take a while (it writes): what arrives meanwhile is read before any wait.
        waited = true;
        await beforeWait();
        continue;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /**
   * After the session's last answer and end were sent: reads and drops what
   * the client still sends until its end, for at most ms, then destroys the
   * stream. A socket closed with bytes unread makes the peer's next write
   * fail, and authpop then drops its end with that last answer still unread
   * in it (the answer to a line flood was lost so in 1 run of 9).
   */
  async drain(ms: number): Promise<void> {
    // Ended or closed before this LineInput listened: nothing left to read.
    if (this.io.readableEnded || this.io.destroyed) return;
    const t = setTimeout(() => this.io.destroy(), ms);
    while (!this.ended && !this.failure) {
      if (this.io.read() === null) await new Promise<void>((resolve) => (this.wake = resolve));
    }
    clearTimeout(t);
  }
}
