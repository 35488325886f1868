// identity: the mail user
/**
 * The session's view of the mailbox: messages numbered 1..N in the order
 * openMailbox gave, and which of them are marked deleted. Numbers never
 * change during a session; a deleted message is invisible until RSET.
 */
import { Message, MessageList } from '@popd/store/maildir';

export class Maildrop {
  private readonly deleted: Uint8Array;
  /** The messages' octets side by side: LIST reads them in order, not from 100,000 objects scattered in memory. */
  private readonly sizes: Float64Array;
  private liveCount: number;
  private liveOctets: number;

  constructor(
    /** The messages as the open gave them; a message object is made only when a command needs it. */
    readonly list: MessageList,
  ) {
    this.deleted = new Uint8Array(list.length);
    this.sizes = list.sizes;
    this.liveCount = list.length;
    this.liveOctets = this.sizes.reduce((sum, n) => sum + n, 0);
  }

  /** Messages numbered, deleted ones too. */
  get total(): number {
    return this.list.length;
  }

  get count(): number {
    return this.liveCount;
  }

  get octets(): number {
    return this.liveOctets;
  }

  /** Message n, or the text of the -ERR answer. */
  lookup(n: number): Message | string {
    if (n < 1 || n > this.total) return `no such message, only ${this.total} messages in maildrop`;
    if (this.deleted[n - 1]) return `message ${n} already deleted`;
    return this.list.message(n - 1);
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
    this.liveCount = this.total;
    this.liveOctets = this.sizes.reduce((sum, n) => sum + n, 0);
  }

  /** The octets of message n (in range). */
  octetsOf(n: number): number {
    return this.sizes[n - 1];
  }

  /** The UIDL of message n (in range). */
  uidl(n: number): string {
    return this.list.uidl(n - 1);
  }

  /** Writes the UIDL of message n (in range) into buf at at; returns where it ends. */
  writeUidl(n: number, buf: Buffer, at: number): number {
    return this.list.writeUidl(n - 1, buf, at);
  }

  /** Whether message n (in range) is marked deleted. */
  isDeleted(n: number): boolean {
    return this.deleted[n - 1] === 1;
  }

  deletedMessages(): Message[] {
    const out: Message[] = [];
    for (let i = 0; i < this.deleted.length; i++) if (this.deleted[i] === 1) out.push(this.list.message(i));
    return out;
  }
}
