// identity: the mail user, the recipient, the admin
/**
 * The messages of an open mailbox, in order: what a session numbers 1..N.
 * A listing makes every message as it reads the directories; an open that
 * trusts the record (state.ts) makes one only when it is asked for (RETR,
 * DELE, the move to cur/), from popcache's lines where they lie in the
 * pieces read, so that the open of 100,000 messages makes no string and no
 * object for each of them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LineIndex, UIDL_LENGTH, uidlOf } from './popcache';
import type { Run, Subdir } from './state';
import { timeOf } from './uniquename';

export interface Message {
  /** The unique name (before ":"), what UIDL hashes. */
  unique: string;
  /** Where the file is: new/ until a session moves it to cur/. */
  dir: Subdir;
  /** Current file name in dir. */
  file: string;
  /** Wire octets (LIST/STAT). */
  octets: number;
  /** Delivery time, microseconds since the epoch (for ordering). */
  time: number;
}

export interface MessageList {
  readonly length: number;
  /** Each message's octets, in order. */
  readonly sizes: Float64Array;
  /** Message i (from 0): the same object each time, which RETR and the move to cur/ update as its file moves. */
  message(i: number): Message;
  /** Every message (made if need be). */
  all(): Message[];
  /** The messages whose file is in new/. */
  inNew(): Message[];
  uidl(i: number): string;
  /** Copies the UIDL of message i into buf at at; returns where it ends. */
  writeUidl(i: number, buf: Buffer, at: number): number;
}

/** Messages a listing made, with their UIDLs as popcache had them (checked), or null to hash them as asked for. */
export class ListedMessages implements MessageList {
  readonly sizes: Float64Array;

  constructor(
    private readonly messages: Message[],
    private readonly uidls: Buffer | null,
  ) {
    // A loop: Float64Array.from with a function took 16 ms for 100,000.
    this.sizes = new Float64Array(messages.length);
    for (let i = 0; i < messages.length; i++) this.sizes[i] = messages[i].octets;
  }

  get length(): number {
    return this.messages.length;
  }

  message(i: number): Message {
    return this.messages[i];
  }

  all(): Message[] {
    return this.messages;
  }

  inNew(): Message[] {
    return this.messages.filter((m) => m.dir === 'new');
  }

  uidl(i: number): string {
    return this.uidls ? this.uidls.toString('latin1', i * UIDL_LENGTH, (i + 1) * UIDL_LENGTH) : uidlOf(this.messages[i].unique);
  }

  writeUidl(i: number, buf: Buffer, at: number): number {
    if (this.uidls) return at + this.uidls.copy(buf, at, i * UIDL_LENGTH, (i + 1) * UIDL_LENGTH);
    return at + buf.write(uidlOf(this.messages[i].unique), at, 'latin1');
  }
}

/**
 * Messages as the record placed them: popcache's recorded lines (names,
 * octets, uidls) and the record's runs (directory and file name suffix);
 * then those listed after them (new mail, in new/).
 */
export class RecordedMessages implements MessageList {
  readonly sizes: Float64Array;
  private readonly made: Array<Message | undefined>;
  /** Where each run starts, and the end of the last. */
  private readonly runStart: Uint32Array;

  constructor(
    private readonly maildir: string,
    private readonly lines: LineIndex,
    private readonly runs: readonly Run[],
    private readonly after: readonly Message[] = [],
  ) {
    this.made = new Array<Message | undefined>(lines.length);
    this.runStart = new Uint32Array(runs.length + 1);
    runs.forEach((r, k) => (this.runStart[k + 1] = this.runStart[k] + r.count));
    if (this.runStart[runs.length] !== lines.length) throw new Error('the runs do not cover the lines');
    if (after.length === 0) this.sizes = lines.octets;
    else {
      this.sizes = new Float64Array(lines.length + after.length);
      this.sizes.set(lines.octets);
      after.forEach((m, k) => (this.sizes[lines.length + k] = m.octets));
    }
  }

  get length(): number {
    return this.lines.length + this.after.length;
  }

  message(i: number): Message {
    if (i >= this.lines.length) return this.after[i - this.lines.length];
    return (this.made[i] ??= this.make(i, this.runAt(i)));
  }

  all(): Message[] {
    const all = new Array<Message>(this.length);
    for (let i = 0; i < all.length; i++) all[i] = this.message(i);
    return all;
  }

  inNew(): Message[] {
    const found: Message[] = [];
    this.runs.forEach((r, k) => {
      if (r.dir === 'new') for (let i = this.runStart[k]; i < this.runStart[k + 1]; i++) found.push(this.message(i));
    });
    return found.concat(this.after.filter((m) => m.dir === 'new'));
  }

  uidl(i: number): string {
    return i < this.lines.length ? this.lines.uidl(i) : uidlOf(this.after[i - this.lines.length].unique);
  }

  writeUidl(i: number, buf: Buffer, at: number): number {
    return i < this.lines.length ? this.lines.copyUidl(i, buf, at) : at + buf.write(this.uidl(i), at, 'latin1');
  }

  /** The run that holds message i. */
  private runAt(i: number): Run {
    let lo = 0;
    for (let hi = this.runs.length - 1; lo < hi; ) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.runStart[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    return this.runs[lo];
  }

  private make(i: number, run: Run): Message {
    const unique = this.lines.name(i);
    const file = unique + run.suffix;
    return { unique, dir: run.dir, file, octets: this.lines.octets[i], time: timeOf(unique) ?? mtimeOf(path.join(this.maildir, run.dir, file)) };
  }
}

/**
 * The delivery time of a message whose name has none: its file's mtime in
 * microseconds, as the listing that ordered it took it; 0 when the file is
 * gone (RETR will say so).
 */
function mtimeOf(file: string): number {
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  return st ? Math.floor(st.mtimeMs * 1000) : 0;
}
