// identity: the mail user
/**
 * The session's view of the mailbox: messages numbered 1..N in the order
 * openMailbox gave, and which of them are marked deleted. Numbers never
 * change during a session; a deleted message is invisible until RSET.
 */
import { Message } from '@popd/store/maildir';
import { UIDL_LENGTH, uidlOf } from '@popd/store/popcache';

export class Maildrop {
  private readonly deleted: Uint8Array;
  /** The messages' octets side by side: LIST reads them in order, not from 100,000 objects scattered in memory. */
  private readonly sizes: Float64Array;
  private liveCount: number;
  private liveOctets: number;

  constructor(
    readonly messages: Message[],
    /** The UIDLs as the open read them from popcache (MailboxIndex.uidls), or null: computed as asked for. */
    private readonly uidls: Buffer | null = null,
  ) {
    this.deleted = new Uint8Array(messages.length);
    this.sizes = Float64Array.from(messages, (m) => m.octets);
    this.liveCount = messages.length;
    this.liveOctets = this.sizes.reduce((sum, n) => sum + n, 0);
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
    this.liveOctets = this.sizes.reduce((sum, n) => sum + n, 0);
  }

  /** The octets of message n (in range). */
  octetsOf(n: number): number {
    return this.sizes[n - 1];
  }

  /** The UIDL of message n (in range). */
  uidl(n: number): string {
    return this.uidls ? this.uidls.toString('latin1', (n - 1) * UIDL_LENGTH, n * UIDL_LENGTH) : uidlOf(this.messages[n - 1].unique);
  }

  /** Writes the UIDL of message n (in range) into buf at at; returns where it ends. */
  writeUidl(n: number, buf: Buffer, at: number): number {
    if (this.uidls) return at + this.uidls.copy(buf, at, (n - 1) * UIDL_LENGTH, n * UIDL_LENGTH);
    return at + buf.write(uidlOf(this.messages[n - 1].unique), at, 'latin1');
  }

  /** Whether message n (in range) is marked deleted. */
  isDeleted(n: number): boolean {
    return this.deleted[n - 1] === 1;
  }

  deletedMessages(): Message[] {
    return this.messages.filter((_, i) => this.deleted[i] === 1);
  }
}
