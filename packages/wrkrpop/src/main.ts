#!/usr/bin/env node
// identity: root until confined, then the mail user
/**
 * wrkrpop: serves TRANSACTION and UPDATE for the sessions popd gives it
 * (docs/architecture.md, "wrkrpop"). popd starts it ahead of need (a warm
 * spare, root, holding only its channel), so every module is loaded here,
 * before the first message says whom to become; confine() then chroots and
 * drops, and from there on it runs as the mail user. Each session arrives
 * as a message naming the user and the maildir (from usertab, relative to
 * the root) with the session's socket beside it; the first line on that
 * socket answers the login. Per uid, it serves many sessions until popd
 * retires it; per session, popd retires it with its one session.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PROTOCOL, WorkerConfine } from '@popd/shared/ipc';
import { EXIT_FLUSH_MS, REFUSED_EXIT_MS } from '@popd/shared/params';
import { EX_NOPERM, EX_OK, EX_SOFTWARE } from '@popd/shared/sysexits';
import { ToPopd } from '@popd/shared/topopd';
import { sayLast, serve } from './serve';
import { confine, isRetire, parseConfine, parseSession, Refusal, trustedDir, UNAVAILABLE } from './confine';

const popd = new ToPopd('wrkrpop');
const log = popd.log;

/** Set by the first message: the confinement and the root as this process sees it. */
let confined: { c: WorkerConfine; root: string } | null = null;
/** The confinement failed: every session gets this answer, then the process exits. */
let refused: Refusal | null = null;
const sessions = new Set<string>();
let retired = false;

async function exit(code: number): Promise<never> {
  await Promise.race([popd.flushed(), new Promise((r) => setTimeout(r, EXIT_FLUSH_MS).unref())]);
  process.exit(code);
}

function exitWhenDone(): void {
  if (retired && sessions.size === 0) void exit(refused === null ? EX_OK : EX_NOPERM);
}

function socketOf(fd: number): net.Socket {
  return new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
}

function onConfine(m: Record<string, unknown>): void {
  const c = parseConfine(m);
  if (c === null) {
    log.err(m.v !== PROTOCOL ? `popd speaks protocol ${String(m.v)}, this wrkrpop ${PROTOCOL}: restart popd after an upgrade` : 'invalid confine message');
    void exit(EX_SOFTWARE);
    return;
  }
  log.verbosity = c.verbosity;
  try {
    confined = { c, root: confine(c) };
    popd.send({ t: 'ready', v: PROTOCOL });
  } catch (err) {
    if (!(err instanceof Refusal)) throw err;
    log.err(err.message);
    refused = err;
    // popd learns of it from the exit; the sessions already sent get the answer first.
    retired = true;
    setTimeout(exitWhenDone, REFUSED_EXIT_MS).unref();
  }
}

async function onSession(m: Record<string, unknown>, fd: number): Promise<void> {
  const s = parseSession(m);
  if (s === null || (confined === null && refused === null)) {
    log.err(s === null ? 'invalid session message' : 'session before confine');
    fs.closeSync(fd);
    return void exit(EX_SOFTWARE);
  }
  sessions.add(s.sid);
  const io = socketOf(fd);
  // Errors surface where the stream is used (reads, writes); without a listener they would crash the process.
  io.on('error', () => undefined);
  try {
    if (refused !== null) await sayLast(io, refused.answer);
    else await serveOne(s.user, s.maildir, io);
  } finally {
    // Closed, not just ended: the process goes on, and authpop's relay ends the client when the worker's side is gone.
    io.destroy();
    sessions.delete(s.sid);
    popd.send({ t: 'ended', sid: s.sid });
    exitWhenDone();
  }
}

async function serveOne(user: string, rel: string, io: net.Socket): Promise<void> {
  const { c, root } = confined!;
  const maildir = path.join(root, rel);
  try {
    // As the mail user, inside the root: nobody else could have swapped a component, and the maildir is the user's own.
    trustedDir(maildir, c.uid, c.gid, true);
  } catch (err) {
    log.err(`user ${user}: maildir refused: ${(err as Error).message}`);
    return sayLast(io, UNAVAILABLE);
  }
  await serve(io, { user, maildir, idleTimeoutMs: c.idleTimeoutMs, log });
}

function main(): void {
  // Log records fall back to stderr when popd is gone; a broken pipe there must not end a session.
  process.stderr.on('error', () => undefined);
  popd.onMessage((m, fd) => {
    if (m.t === 'confine' && confined === null && refused === null) onConfine(m);
    else if (m.t === 'session' && fd !== null) {
      onSession(m, fd).catch((err: unknown) => {
        log.err(`internal error: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
        void exit(EX_SOFTWARE);
      });
      return;
    } else if (isRetire(m)) {
      retired = true;
      exitWhenDone();
    } else {
      log.err(`unexpected message ${String(m.t)}`);
      void exit(EX_SOFTWARE);
    }
    if (fd !== null) fs.closeSync(fd);
  });
  // popd went away: the sessions under way end as they would; no new one comes.
  popd.onClose(() => {
    retired = true;
    exitWhenDone();
  });
}

main();
