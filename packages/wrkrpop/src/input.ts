// identity: the mail user
/**
 * Command lines from the client, pulled one at a time: the stream is read
 * only when the engine asks for the next line, so pipelined input waits in
 * the stream's bounded buffer and the socket (backpressure towards the
 * client) while an answer is being sent.
 */
import { Duplex } from 'node:stream';
import { LineStep, Pop3Lines } from '@popd/shared/pop3lines';

export class LineInput {
  private readonly chunks: AsyncIterator<Buffer>;
  private readonly lines = new Pop3Lines();

  constructor(io: Duplex) {
    this.chunks = io[Symbol.asyncIterator]();
  }

  /**
   * The next line, answer or end, or null at end of input. beforeWait runs
   * when no complete line is buffered, before waiting for the client.
   */
  async next(beforeWait: () => Promise<void>): Promise<LineStep | null> {
    for (;;) {
      const step = this.lines.next();
      if (step) return step;
      await beforeWait();
      const r = await this.chunks.next();
      if (r.done) return null;
      this.lines.push(r.value);
    }
  }
}
