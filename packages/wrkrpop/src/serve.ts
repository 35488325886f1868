// identity: the mail user
/**
 * One session from the first line to the last, over any duplex stream, once
 * the process is confined: the maildrop lock, the mailbox index, the greeting,
 * TRANSACTION (while messages found in new/ move to cur/), UPDATE on QUIT,
 * the summary in the log. Nothing here is per process: one worker may serve
 * many sessions, each a call of serve().
 */
import path from 'node:path';
import { Duplex } from 'node:stream';
import { commitDeletions, moveToCur, openMailbox } from '@popd/store/maildir';
import { MAILDROP_LOCK, Lock, tryLock } from '@popd/store/lock';
import { errnoCode } from '@popd/store/fsutil';
import { Logger } from '@popd/shared/log';
import { CLOSE_LINGER_MS } from '@popd/shared/params';
import { Maildrop } from './maildrop';
import { LineInput } from './input';
import { EndReason, Session } from './transaction';

export interface ServeOptions {
  user: string;
  /** The maildir as this process sees it ("/" once chrooted into it). */
  maildir: string;
  idleTimeoutMs: number;
  log: Logger;
}

/** How a session ended; 'in-use' and 'unavailable' never reached TRANSACTION. */
export type Outcome = EndReason | 'in-use' | 'unavailable';

export interface Summary {
  outcome: Outcome;
  retrieved: number;
  octetsSent: number;
  deleted: number;
  /** Deletions UPDATE could not carry out. */
  undeleted: number;
}

type Opened = { lock: Lock; box: Maildrop; inNew: number } | { outcome: 'in-use' | 'unavailable'; answer: string };

async function open(o: ServeOptions): Promise<Opened> {
  let lock: Lock | null;
  try {
    lock = tryLock(path.join(o.maildir, MAILDROP_LOCK));
  } catch (err) {
    o.log.err(`user ${o.user}: maildrop lock: ${errnoCode(err)}`);
    return { outcome: 'unavailable', answer: '-ERR [SYS/TEMP] mailbox unavailable, try again later' };
  }
  if (!lock) {
    o.log.notice(`user ${o.user}: maildrop in use by another session`);
    return { outcome: 'in-use', answer: '-ERR [IN-USE] mailbox in use by another session' };
  }
  try {
    const index = await openMailbox(o.maildir);
    o.log.debug(`user ${o.user}: ${index.inNew} new, ${index.counted} counted, popcache ${index.rewritten ? 'rewritten' : 'kept'}, listing ${index.listing}`);
    return { lock, box: new Maildrop(index.list), inNew: index.inNew };
  } catch (err) {
    lock.release();
    o.log.err(`user ${o.user}: cannot open mailbox: ${errnoCode(err)}`);
    return { outcome: 'unavailable', answer: '-ERR [SYS/TEMP] mailbox unavailable, try again later' };
  }
}

export async function serve(io: Duplex, o: ServeOptions): Promise<Summary> {
  const started = Date.now();
  // Errors surface where the stream is used (reads, writes); without a listener they would crash the process.
  io.on('error', () => undefined);
  o.log.info(`session start user=${o.user}`);
  const opened = await open(o);
  const summary: Summary = { outcome: 'unavailable', retrieved: 0, octetsSent: 0, deleted: 0, undeleted: 0 };
  let session: Session | null = null;
  if ('outcome' in opened) {
    summary.outcome = opened.outcome;
    await sayLast(io, opened.answer);
  } else {
    const { box, lock, inNew } = opened;
    session = new Session(io, { maildir: o.maildir, box, idleTimeoutMs: o.idleTimeoutMs, log: o.log });
    // Started before the greeting: its first slice (all of a small mailbox) runs now, the others while the client is silent.
    const stopMoving = inNew > 0 ? moveInBackground(o, box, session) : null;
    await session.out.line(`+OK ${o.user} has ${box.count} messages (${box.octets} octets)`).catch(() => undefined);
    summary.outcome = await session.run();
    // What is not moved yet stays in new/, served from there next time; the move ends before the lock is released.
    if (stopMoving) o.log.debug(`user ${o.user}: ${await stopMoving()} of ${inNew} moved from new/ to cur/`);
    let answer: string | null = null;
    if (summary.outcome === 'quit') {
      const r = await update(o, box, session.corrections);
      summary.deleted = r.removed;
      summary.undeleted = r.failed;
      answer = r.failed > 0 ? `-ERR [SYS/TEMP] ${r.failed} of ${r.failed + r.removed} messages could not be deleted` : `+OK ${r.removed} messages deleted, ${box.count} left`;
    } else if (session.corrections.size > 0) {
      await correctSizes(o, session.corrections);
    }
    lock.release();
    summary.retrieved = session.retrieved;
    if (session.usable) {
      if (answer) await session.out.line(answer).catch(() => undefined);
      await session.out.end().catch(() => undefined);
      await session.drain();
    } else {
      io.destroy();
    }
    summary.octetsSent = session.out.sent;
  }
  const secs = ((Date.now() - started) / 1000).toFixed(3);
  const why = session?.detail ? ` (${session.detail})` : '';
  o.log.info(
    `session end user=${o.user} ended=${summary.outcome}${why} retrieved=${summary.retrieved} octets=${summary.octetsSent} deleted=${summary.deleted}` +
      (summary.undeleted > 0 ? ` undeleted=${summary.undeleted}` : '') +
      ` duration=${secs}s`,
  );
  return summary;
}

/** Moves what the session found in new/ to cur/ in the background (moveToCur); the function returned stops it and tells how many moved. */
function moveInBackground(o: ServeOptions, box: Maildrop, session: Session): () => Promise<number> {
  const abort = new AbortController();
  const moving = moveToCur(o.maildir, box.list.inNew(), { signal: abort.signal, pause: () => session.quiet() }).catch((err: unknown) => {
    o.log.err(`user ${o.user}: moving new mail to cur/: ${errnoCode(err)}`);
    return 0;
  });
  return () => {
    abort.abort();
    return moving;
  };
}

/**
 * The only line of a session that never reached TRANSACTION, with the end;
 * then what the client still sends is read and dropped until its end, as
 * after any session (LineInput.drain).
 */
export async function sayLast(io: Duplex, line: string): Promise<void> {
  await new Promise<void>((resolve) => {
    io.once('close', resolve);
    io.end(line + '\r\n', resolve);
  });
  await new LineInput(io).drain(CLOSE_LINGER_MS);
}

/** UPDATE: removes the deleted messages and rewrites popcache (with any corrected sizes). */
async function update(o: ServeOptions, box: Maildrop, corrections: Map<string, number>): Promise<{ removed: number; failed: number }> {
  const deleted = box.deletedMessages();
  try {
    const r = await commitDeletions(o.maildir, deleted, corrections);
    if (r.failed > 0) o.log.err(`user ${o.user}: UPDATE: ${r.failed} of ${deleted.length} messages could not be removed`);
    return r;
  } catch (err) {
    // Files may be gone while popcache still lists them: the next login reconciles the two.
    o.log.err(`user ${o.user}: UPDATE failed: ${errnoCode(err)}`);
    return { removed: 0, failed: deleted.length };
  }
}

/** Without UPDATE, only popcache's sizes are fixed: nothing is removed. */
async function correctSizes(o: ServeOptions, corrections: Map<string, number>): Promise<void> {
  try {
    await commitDeletions(o.maildir, [], corrections);
  } catch (err) {
    o.log.warning(`user ${o.user}: cannot correct popcache sizes: ${errnoCode(err)}`);
  }
}
