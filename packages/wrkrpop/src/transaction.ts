// identity: the mail user
/**
 * The TRANSACTION state over any duplex stream: one command at a time, in
 * the order received, each answer written (with backpressure) before the
 * next command is read. Ends on QUIT (the caller runs UPDATE), end of
 * input, the idle timeout, or an error; only QUIT leads to deletions.
 */
import fs from 'node:fs';
import { Duplex } from 'node:stream';
import { Message, markSeen } from '@popd/store/maildir';
import { errnoCode } from '@popd/store/fsutil';
import { Pacer } from '@popd/store/pacer';
import { Logger } from '@popd/shared/log';
import { CLOSE_LINGER_MS, QUIET_MS, READ_AHEAD_MAX } from '@popd/shared/params';
import { TRANSACTION_CAPABILITIES } from '@popd/shared/capa';
import { Command, parseCommand } from './command';
import { LineInput } from './input';
import { writeListing } from './listing';
import { Maildrop } from './maildrop';
import { Output } from './output';
import { openMessage, readWhole, streamMessage, wholeRoom } from './retr';
import { TopLimiter } from './top';

export type EndReason = 'quit' | 'eof' | 'timeout' | 'error';

export interface SessionContext {
  /** The maildir as this process sees it ("/" when chrooted into it). */
  maildir: string;
  box: Maildrop;
  idleTimeoutMs: number;
  log: Logger;
}

export class Session {
  readonly out: Output;
  private readonly input: LineInput;
  private idle: NodeJS.Timeout | null = null;
  private timedOut = false;
  /** Messages sent whole by RETR. */
  retrieved = 0;
  /** Wire octets found by RETR where the index said otherwise, by unique name: popcache is fixed at the end. */
  readonly corrections = new Map<string, number>();
  /** Why the session ended, when it was not a plain QUIT, EOF or timeout. */
  detail = '';
  /** False once the stream cannot take a last answer (timeout, stream error, a response cut short). */
  usable = true;
  /** Since when the session waits for the client's next command; null while it reads or answers one. */
  private waitingSince: number | null = null;
  private ended = false;
  /** quiet() callers waiting for the session to wait for the client. */
  private readonly wakers: Array<() => void> = [];
  /**
   * Messages sent whole and not yet marked seen, by number. The renames wait
   * until the client has been silent QUIET_MS, or the session ends (Dovecot
   * sets \Seen only at QUIT): a client fetching message after message never
   * waits for them, and a worker killed before loses a flag, not mail.
   */
  private readonly unseen: Array<{ n: number; m: Message }> = [];
  /** Waits for the client to be silent, then makes the seen marks and frees the read-ahead buffer (whenQuiet), while it does. */
  private quietWork: Promise<void> | null = null;
  /** Set when QUIT ends the session (UPDATE follows). */
  private quitting = false;
  /** The number of the last message RETR sent whole. */
  private lastRetr = 0;
  /** The message to read ahead at the next wait for the client: set by RETR of k right after k-1, else 0. */
  private readAheadNext = 0;
  /** Message n's answer, read ahead while the client was silent (readAhead), in aheadRoom. */
  private ahead: { n: number; body: Buffer; octets: number } | null = null;
  /** Kept while the client fetches message after message (a buffer per message cost a garbage collection every few). */
  private aheadRoom: Buffer | null = null;

  constructor(
    private readonly io: Duplex,
    private readonly ctx: SessionContext,
  ) {
    this.out = new Output(io, () => this.touch());
    this.input = new LineInput(io);
  }

  /** After the last answer and the end were sent: the client's further bytes are read and dropped until its end (LineInput.drain). */
  drain(): Promise<void> {
    return this.input.drain(CLOSE_LINGER_MS);
  }

  private touch(): void {
    this.idle?.refresh();
  }

  /** Before the engine waits for the client: everything gathered is written, and background work may run. */
  private async awaitClient(): Promise<void> {
    await this.out.flush();
    this.waitingSince = performance.now();
    for (const wake of this.wakers.splice(0)) wake();
    if (this.unseen.length > 0 || this.aheadRoom !== null) this.quietWork ??= this.whenQuiet();
    const next = this.readAheadNext;
    this.readAheadNext = 0;
    if (next > 0) setImmediate(() => this.readAhead(next));
  }

  /**
   * After RETR of k-1 and k, reads message k+1 (at most READ_AHEAD_MAX on
   * disk) while the client is silent: its RETR finds the answer ready, and
   * the file's reading and editing happen while authpop and the client work
   * on the message before. Any failure is left to RETR to meet and report.
   */
  private readAhead(n: number): void {
    if (this.ended || this.waitingSince === null) return; // the client spoke first: its command comes first
    const { box, maildir } = this.ctx;
    const m = box.lookup(n);
    if (typeof m === 'string' || m.octets > READ_AHEAD_MAX) return;
    let file: { fd: number; size: number };
    try {
      file = openMessage(maildir, m);
    } catch {
      return;
    }
    const { fd, size } = file;
    try {
      if (size > READ_AHEAD_MAX) return;
      this.aheadRoom ??= Buffer.allocUnsafe(wholeRoom(READ_AHEAD_MAX));
      const r = readWhole(fd, size, this.aheadRoom);
      this.ahead = r && { n, ...r };
    } catch {
      this.ahead = null;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Once the client has been silent QUIET_MS, marks the retrieved messages seen and lets the read-ahead buffer go. */
  private async whenQuiet(): Promise<void> {
    await this.quiet();
    if (!this.ended) {
      // A client fetching one message after another is back long before.
      this.ahead = null;
      this.aheadRoom = null;
      await this.markRetrieved(null);
    }
    this.quietWork = null;
  }

  /** Resolves once the client has been silent for QUIET_MS, or the session has ended. */
  async quiet(): Promise<void> {
    while (!this.ended) {
      if (this.waitingSince === null) {
        await new Promise<void>((r) => this.wakers.push(r));
        continue;
      }
      const left = this.waitingSince + QUIET_MS - performance.now();
      if (left <= 0) return;
      // Woken early by the next wait for the client or the end, which the loop then looks at.
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wakers.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  async run(): Promise<EndReason> {
    this.idle = setTimeout(() => {
      this.timedOut = true;
      this.io.destroy();
    }, this.ctx.idleTimeoutMs);
    try {
      for (;;) {
        const ev = await this.input.next(() => this.awaitClient());
        this.waitingSince = null;
        if (ev === null) return 'eof';
        this.touch();
        if (ev.t === 'line') {
          if (await this.execute(parseCommand(ev.line.toString('latin1')))) {
            this.quitting = true;
            return 'quit';
          }
        } else if (ev.t === 'answer') {
          await this.out.line(ev.text);
        } else {
          await this.out.line(ev.text);
          this.detail = ev.why;
          return 'error';
        }
      }
    } catch (err) {
      this.usable = false;
      if (this.timedOut) return 'timeout';
      this.detail = this.detail ? `${this.detail}: ${errnoCode(err)}` : errnoCode(err);
      return 'error';
    } finally {
      clearTimeout(this.idle);
      this.ended = true;
      for (const wake of this.wakers.splice(0)) wake();
      await this.quietWork;
      await this.markRetrieved(this.quitting ? 'quit' : 'other');
    }
  }

  /** Answers one command; true for QUIT. */
  private async execute(cmd: Command): Promise<boolean> {
    const { box } = this.ctx;
    const out = this.out;
    switch (cmd.kind) {
      case 'bad':
        await out.line(`-ERR ${cmd.text}`);
        return false;
      case 'QUIT':
        return true;
      case 'NOOP':
        await out.line('+OK');
        return false;
      case 'STAT':
        await out.line(`+OK ${box.count} ${box.octets}`);
        return false;
      case 'RSET':
        box.rset();
        await out.line(`+OK maildrop has ${box.count} messages (${box.octets} octets)`);
        return false;
      case 'CAPA':
        await out.line('+OK capability list follows');
        for (const c of TRANSACTION_CAPABILITIES) await out.line(c);
        await out.line('.');
        return false;
      case 'DELE': {
        const err = box.dele(cmd.msg);
        await out.line(err === null ? `+OK message ${cmd.msg} deleted` : `-ERR ${err}`);
        return false;
      }
      case 'LIST':
      case 'UIDL': {
        if (cmd.msg !== null) {
          const m = box.lookup(cmd.msg);
          await out.line(typeof m === 'string' ? `-ERR ${m}` : `+OK ${cmd.msg} ${cmd.kind === 'LIST' ? m.octets : box.uidl(cmd.msg)}`);
          return false;
        }
        await out.line(cmd.kind === 'LIST' ? `+OK ${box.count} messages (${box.octets} octets)` : '+OK unique-id listing follows');
        await writeListing(out, box, cmd.kind);
        await out.line('.');
        return false;
      }
      case 'RETR':
        await this.send(cmd.msg, null);
        return false;
      case 'TOP':
        await this.send(cmd.msg, new TopLimiter(cmd.lines));
        return false;
    }
  }

  /** RETR (limit null) or TOP. */
  private async send(n: number, limit: TopLimiter | null): Promise<void> {
    const { box, maildir, log } = this.ctx;
    const m = box.lookup(n);
    if (typeof m === 'string') return this.out.line(`-ERR ${m}`);
    const ahead = this.ahead;
    this.ahead = null;
    if (limit === null && ahead?.n === n) {
      await this.out.line(`+OK ${m.octets} octets`);
      await this.out.bytes(ahead.body);
      return this.sentWhole(n, m, ahead.octets);
    }
    let fd: number;
    try {
      fd = openMessage(maildir, m).fd;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT') {
        log.warning(`message ${n} (${m.unique}) vanished since login`);
        return this.out.line(`-ERR [SYS/TEMP] message ${n} is no longer available`);
      }
      if (code === 'ELOOP' || code === 'EFTYPE') {
        log.warning(`message ${n} (${m.file}) is not a regular file: not served`);
        return this.out.line(`-ERR [SYS/PERM] message ${n} cannot be served`);
      }
      log.err(`message ${n} (${m.file}): open: ${code}`);
      return this.out.line(`-ERR [SYS/TEMP] message ${n} cannot be read now`);
    }
    try {
      await this.out.line(limit ? '+OK top of message follows' : `+OK ${m.octets} octets`);
      // A read error from here on cannot be answered with -ERR: it ends the session (no UPDATE).
      this.detail = `sending message ${n}`;
      const sent = await streamMessage(fd, this.out, limit);
      this.detail = '';
      if (!limit) this.sentWhole(n, m, sent);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** RETR sent message n whole, sent wire octets of it. */
  private sentWhole(n: number, m: Message, sent: number): void {
    this.retrieved++;
    if (sent !== m.octets) {
      this.ctx.log.warning(`message ${n} (${m.unique}): indexed as ${m.octets} octets, sent ${sent}; popcache will be corrected`);
      this.corrections.set(m.unique, sent);
    }
    this.unseen.push({ n, m });
    this.readAheadNext = n === this.lastRetr + 1 ? n + 1 : 0;
    this.lastRetr = n;
  }

  /**
   * Marks seen the messages sent whole since the last call, a slice at a
   * time. One marked deleted waits for the end (RSET may keep it), where it
   * is left to UPDATE after QUIT.
   */
  private async markRetrieved(end: 'quit' | 'other' | null): Promise<void> {
    const { box, maildir, log } = this.ctx;
    const pacer = new Pacer();
    for (const { n, m } of this.unseen.splice(0)) {
      if (box.isDeleted(n) && end !== 'other') {
        if (end === null) this.unseen.push({ n, m });
        continue;
      }
      try {
        markSeen(maildir, m);
      } catch (err) {
        log.warning(`message ${n} (${m.unique}): cannot mark seen: ${errnoCode(err)}`);
      }
      if (pacer.tick()) await pacer.yield();
    }
  }
}
