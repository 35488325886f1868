// identity: root
/**
 * Where popd's own records and its children's go: syslog (facility mail,
 * under the child's ident and pid) or, with -d, stderr.
 */
import { escapeLog, Level, LEVELS, Logger, stderrSink, syslogSink, writeSyslog } from '@popd/shared/log';

export type ChildSink = (ident: string, pid: number, level: Level, msg: string) => void;

export interface Logs {
  log: Logger;
  child: ChildSink;
}

export function makeLogs(foreground: boolean, verbosity: number): Logs {
  const log = new Logger(foreground ? stderrSink('popd') : syslogSink('popd'), verbosity);
  const child: ChildSink = (ident, pid, level, msg) => {
    // Children filter by the same verbosity; a hostile child gains nothing by lying about it.
    if (LEVELS.indexOf(level) > LEVELS.indexOf('info') + verbosity) return;
    const text = escapeLog(msg);
    if (foreground) process.stderr.write(`${new Date().toISOString()} ${ident}[${pid}] ${level}: ${text}\n`);
    else writeSyslog(ident, pid, level, text);
  };
  return { log, child };
}
