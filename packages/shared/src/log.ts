// identity: root, _pop3d, the mail user, the recipient
/**
 * Logging. popd and popmda write to syslog (facility mail) themselves;
 * authpop and wrkrpop are chrooted and cannot reach /dev/log reliably, so they
 * send records over their channel to popd, and popd writes them under the child's
 * ident and pid. Every message is escaped: user names and addresses come
 * from the network. Never pass a password, a hash or message text here.
 */
import posix from 'posix';

export type Level = 'err' | 'warning' | 'notice' | 'info' | 'debug';
export const LEVELS: readonly Level[] = ['err', 'warning', 'notice', 'info', 'debug'];
const RANK: Record<Level, number> = { err: 0, warning: 1, notice: 2, info: 3, debug: 4 };

export type Sink = (level: Level, msg: string) => void;

/**
 * Printable ASCII only, and lossless: a backslash is doubled, anything else
 * becomes \xNN or \u{N}, so a hostile user name or child can neither forge
 * log lines or terminal escapes nor pass one character off as another.
 */
export function escapeLog(s: string): string {
  return s.replace(/[^\x20-\x5b\x5d-\x7e]/gu, (c) => {
    const n = c.codePointAt(0)!;
    if (c === '\\') return '\\\\';
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16)}}`;
  });
}

export class Logger {
  constructor(
    private sink: Sink,
    /** 0 logs info and above; each -v adds debug. */
    public verbosity = 0,
  ) {}

  private emit(level: Level, msg: string): void {
    if (RANK[level] > RANK.info + this.verbosity) return;
    this.sink(level, escapeLog(msg));
  }
  err(msg: string): void {
    this.emit('err', msg);
  }
  warning(msg: string): void {
    this.emit('warning', msg);
  }
  notice(msg: string): void {
    this.emit('notice', msg);
  }
  info(msg: string): void {
    this.emit('info', msg);
  }
  debug(msg: string): void {
    this.emit('debug', msg);
  }
}

let syslogIdent = '';

/** Writes through syslog(3); glibc reconnects by itself when the syslog daemon restarts. */
export function syslogSink(ident: string): Sink {
  return (level, msg) => writeSyslog(ident, process.pid, level, msg);
}

/** Writes one record under another process's ident and pid (popd for its children). */
export function writeSyslog(ident: string, pid: number, level: Level, msg: string): void {
  const tag = `${ident}[${pid}]`;
  if (tag !== syslogIdent) {
    posix.openlog(tag, { ndelay: true }, 'mail');
    syslogIdent = tag;
  }
  posix.syslog(level, msg);
}

export function stderrSink(ident: string): Sink {
  return (level, msg) => {
    process.stderr.write(`${new Date().toISOString()} ${ident}[${process.pid}] ${level}: ${msg}\n`);
  };
}

/** For chrooted children: records go to popd over the channel; send is false once popd is gone. */
export function channelSink(send: (level: Level, msg: string) => boolean, fallback: Sink): Sink {
  return (level, msg) => {
    if (!send(level, msg)) fallback(level, msg);
  };
}

export function isLevel(x: unknown): x is Level {
  return typeof x === 'string' && (LEVELS as readonly string[]).includes(x);
}
