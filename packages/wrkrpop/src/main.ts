#!/usr/bin/env node
/**
 * wrkrpop: one process per logged-in user, serving TRANSACTION and UPDATE
 * on its stdin, a full-duplex socketpair whose other end authpop relays.
 * popd may start it before anyone logs in (a warm spare), so every module is
 * loaded here, before the one start message says whose mailbox this is; then
 * it confines itself (chroot and drop, or the unprivileged check), answers
 * the login with its first line, serves, and exits. Logs go to popd over IPC.
 */
import net from 'node:net';
import { Logger, ipcFlushed, ipcSink, stderrSink } from '@popd/shared/log';
import { EX_IOERR, EX_NOPERM, EX_OK, EX_SOFTWARE, EX_TEMPFAIL, EX_USAGE } from '@popd/shared/sysexits';
import { Outcome, serve } from './serve';
import { Refusal, confine, parseStart } from './start';

const log = new Logger(ipcSink(stderrSink('wrkrpop')));

const EXIT: Record<Outcome, number> = { quit: EX_OK, eof: EX_OK, timeout: EX_OK, error: EX_IOERR, 'in-use': EX_TEMPFAIL, unavailable: EX_TEMPFAIL };

async function exit(code: number): Promise<never> {
  // Bounded: a popd that stopped reading must not keep this process alive.
  await Promise.race([ipcFlushed(), new Promise((r) => setTimeout(r, 2000).unref())]);
  process.exit(code);
}

/** The client's end: fd 0, a socketpair, readable and writable. Made only after the start message. */
function clientSocket(): net.Socket {
  return new net.Socket({ fd: 0, readable: true, writable: true, allowHalfOpen: true });
}

async function start(raw: unknown): Promise<never> {
  const s = parseStart(raw);
  if (!s) {
    log.err('invalid start message');
    return exit(EX_SOFTWARE);
  }
  log.verbosity = s.verbosity;
  let maildir: string;
  try {
    maildir = confine(s);
  } catch (err) {
    if (!(err instanceof Refusal)) throw err;
    log.err(err.message);
    const io = clientSocket();
    io.on('error', () => undefined);
    await new Promise<void>((r) => io.end(err.answer + '\r\n', r));
    return exit(EX_NOPERM);
  }
  const summary = await serve(clientSocket(), { user: s.user, maildir, idleTimeoutMs: s.idleTimeoutMs, log });
  return exit(EXIT[summary.outcome]);
}

function main(): void {
  if (!process.send) {
    process.stderr.write('wrkrpop: must be started by popd (no IPC channel)\n');
    process.exit(EX_USAGE);
  }
  // Log records fall back to stderr when popd is gone; a broken pipe there must not end the session.
  process.stderr.on('error', () => undefined);
  let started = false;
  process.once('message', (m) => {
    started = true;
    start(m).catch((err: unknown) => {
      log.err(`internal error: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      void exit(EX_SOFTWARE);
    });
  });
  // popd went away before it said whose mailbox this is: nothing to do.
  process.once('disconnect', () => {
    if (!started) process.exit(EX_OK);
  });
}

main();
