/**
 * The session's view of the mailbox: messages numbered 1..N in the order
 * openMailbox gave, and which of them are marked deleted. Numbers never
 * change during a session; a deleted message is invisible until RSET.
 */
import { Message } from '@popd/shared/maildir';

export class Maildrop {
  private readonly deleted: Uint8Array;
  private liveCount: number;
  private liveOctets: number;

  constructor(readonly messages: Message[]) {
    this.deleted = new Uint8Array(messages.length);
    this.liveCount = messages.length;
    this.liveOctets = messages.reduce((sum, m) => sum + m.octets, 0);
  }

  get count(): number {
    return this.liveCount;
  }

  get octets(): number {
    return this.liveOctets;
  }

  /** Message n, or the text of the -ERR answer. */
  lookup(n: number): Message | string {
    if (n < 1 || n > this.messages.length) return `no such message, only ${this.messages.length} messages in maildrop`;
    if (this.deleted[n - 1]) return `message ${n} already deleted`;
    return this.messages[n - 1];
  }

  /** Marks message n deleted; null on success, else the -ERR text. */
  dele(n: number): string | null {
    const m = this.lookup(n);
    if (typeof m === 'string') return m;
    this.deleted[n - 1] = 1;
    this.liveCount--;
    this.liveOctets -= m.octets;
    return null;
  }

  rset(): void {
    this.deleted.fill(0);
    this.liveCount = this.messages.length;
    this.liveOctets = this.messages.reduce((sum, m) => sum + m.octets, 0);
  }

  /** Messages not deleted, with their numbers. */
  *live(): Generator<[number, Message]> {
    for (let i = 0; i < this.messages.length; i++) if (!this.deleted[i]) yield [i + 1, this.messages[i]];
  }

  deletedMessages(): Message[] {
    return this.messages.filter((_, i) => this.deleted[i] === 1);
  }
}
