// identity: root
/**
 * How popd (root) starts a child and takes what it says, trusting none of
 * it (docs/architecture.md, "Children are hostile"): the child gets a
 * minimal environment and only its own descriptors (stderr and the channel
 * as descriptor 3); its messages come as bounded datagrams that popd decodes
 * and validates itself, never with a parser that can throw on them; a
 * descriptor from a child, a malformed message or a log flood ends that
 * child only.
 */
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import { Channel, socketpair } from '@popd/channel';
import { decode, encode, LogRecord, PopdToAuthpop, PopdToWorker, PROTOCOL } from '@popd/shared/ipc';
import type { Logger } from '@popd/shared/log';
import type { ChildSink } from './logs';
import { childLines } from './child-stderr';
import { LOG_BURST, LOG_DROP_REPORT_MS, LOG_PER_SECOND } from '@popd/shared/params';

/**
 * A child's environment: nothing of root's (HOME, credentials in variables,
 * NODE_OPTIONS that would load code) reaches it. The children need none.
 */
const CHILD_ENV: NodeJS.ProcessEnv = { PATH: '/usr/bin:/bin' };

export interface ChildEvents<M> {
  /** A valid message (parse returned it). */
  message(m: M): void;
  exit(code: number | null, signal: NodeJS.Signals | null): void;
}

/** Log records a child may send: LOG_PER_SECOND on average, LOG_BURST at once; the rest are counted and reported. */
class LogBudget {
  private tokens = LOG_BURST;
  private last = Date.now();
  dropped = 0;

  take(): boolean {
    const now = Date.now();
    this.tokens = Math.min(LOG_BURST, this.tokens + ((now - this.last) / 1000) * LOG_PER_SECOND);
    this.last = now;
    if (this.tokens < 1) {
      this.dropped++;
      return false;
    }
    this.tokens--;
    return true;
  }
}

export class Child<M extends { t: string }> {
  readonly proc: ChildProcess;
  readonly pid: number;
  private readonly channel: Channel;
  private readonly budget = new LogBudget();
  private readonly dropReport: NodeJS.Timeout;
  private gotReady = false;

  constructor(
    readonly ident: 'authpop' | 'wrkrpop',
    script: string,
    nodeArgs: readonly string[],
    parse: (m: Record<string, unknown>) => M | LogRecord | { t: 'ready'; v: number } | null,
    ev: ChildEvents<M>,
    private readonly log: Logger,
    sink: ChildSink,
  ) {
    const [mine, theirs] = socketpair('seqpacket');
    try {
      this.proc = spawn(process.execPath, [...nodeArgs, script], { stdio: ['ignore', 'ignore', 'pipe', theirs], env: CHILD_ENV });
    } catch (err) {
      fs.closeSync(mine);
      throw err;
    } finally {
      fs.closeSync(theirs);
    }
    this.pid = this.proc.pid ?? 0;
    this.channel = new Channel(mine);
    const who = `${ident}[${this.pid}]`;
    const bad = (why: string): void => {
      log.err(`${who} ${why}; killing it`);
      this.kill('SIGKILL');
    };
    this.proc.on('error', (err) => log.err(`cannot start ${ident}: ${err.message}`));
    childLines(this.proc.stderr!, (line) => {
      if (this.budget.take()) sink(ident, this.pid, 'err', line);
    });
    // ERR_CHANNEL_*: the child sent something no popd code would (too long, descriptors, other ancillary
    // data). An errno (EPIPE, ECONNRESET) is the child dying: 'close' and 'exit' follow.
    this.channel.on('error', (err) => {
      if (err.code.startsWith('ERR_CHANNEL_')) bad('sent a malformed datagram');
      else log.debug(`${who}: channel: ${err.code}`);
    });
    this.channel.on('message', (data: Buffer, fd: number | null) => {
      if (fd !== null) {
        fs.closeSync(fd);
        return bad('sent a descriptor');
      }
      const raw = decode(data);
      const m = raw === null ? null : parse(raw);
      if (m === null) return bad('sent a malformed message');
      if (m.t === 'log') {
        const rec = m as LogRecord;
        if (this.budget.take()) sink(ident, this.pid, rec.level, rec.msg);
        return;
      }
      if (m.t === 'ready') {
        const v = (m as { v: number }).v;
        if (this.gotReady) return bad('said ready twice');
        if (v !== PROTOCOL) return bad(`speaks protocol ${v}, popd ${PROTOCOL} (an upgrade under a running popd? restart popd)`);
        this.gotReady = true;
      }
      ev.message(m as M);
    });
    this.dropReport = setInterval(() => {
      if (this.budget.dropped === 0) return;
      log.warning(`${who}: ${this.budget.dropped} log lines dropped (more than ${LOG_PER_SECOND}/s)`);
      this.budget.dropped = 0;
    }, LOG_DROP_REPORT_MS).unref();
    this.proc.on('exit', (code, signal) => {
      clearInterval(this.dropReport);
      this.channel.close();
      ev.exit(code, signal);
    });
  }

  get ready(): boolean {
    return this.gotReady && this.alive;
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Queues a message, with a descriptor that popd keeps (the channel sends a copy); false when the child cannot take it. */
  send(m: PopdToAuthpop | PopdToWorker, fd?: number): boolean {
    if (!this.alive) return false;
    const ok = this.channel.send(encode(m), fd);
    if (!ok) this.log.warning(`${this.ident}[${this.pid}] is not reading its channel; ${m.t} not sent`);
    return ok;
  }

  kill(sig: NodeJS.Signals): void {
    if (this.alive) this.proc.kill(sig);
  }
}
