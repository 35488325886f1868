/**
 * Command lines from the client, pulled one at a time: the stream is read
 * only when the engine asks for the next line, so pipelined input waits in
 * the stream's bounded buffer and the socket (backpressure towards the
 * client) while an answer is being sent.
 */
import { Duplex } from 'node:stream';
import { LineEvent, LineSplitter } from './lines';

export class LineInput {
  private readonly chunks: AsyncIterator<Buffer>;
  private readonly splitter = new LineSplitter();

  constructor(io: Duplex) {
    this.chunks = io[Symbol.asyncIterator]();
  }

  /**
   * The next line event, or null at end of input. beforeWait runs when no
   * complete line is buffered, before waiting for the client.
   */
  async next(beforeWait: () => Promise<void>): Promise<LineEvent | null> {
    for (;;) {
      const ev = this.splitter.next();
      if (ev) return ev;
      await beforeWait();
      const r = await this.chunks.next();
      if (r.done) return null;
      this.splitter.push(r.value);
    }
  }
}
