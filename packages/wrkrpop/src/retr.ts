// identity: the mail user
/**
 * RETR and TOP: a message file streamed through the wire form and
 * dot-stuffing (WireEdit) and TOP's cut, a block at a time, so that any
 * message size costs the same memory. Each chunk is read straight into the
 * output's buffer and edited there: a chunk that needs no change is never
 * copied, one that does has each byte moved at most once.
 * Files in the maildir are hostile: never followed through a symlink, never
 * anything but a regular file.
 * File I/O is synchronous on purpose: thread-pool round trips for open,
 * fstat, read and close cost more than the reads themselves (pipelined RETRs
 * of small messages ran at a third of the speed); a read is at most a block
 * (OUTPUT_BLOCK), and a long message yields to other sessions between blocks.
 */
import fs from 'node:fs';
import path from 'node:path';
import { openRegular } from '@popd/store/fsutil';
import { Message, locateMessages } from '@popd/store/maildir';
import { Pacer } from '@popd/store/pacer';
import { OUTPUT_BLOCK } from '@popd/shared/params';
import { Output } from './output';
import { TopLimiter } from './top';
import { WireEdit } from './wireedit';

/**
 * Opens message m read-only: its descriptor and size. When its file was
 * renamed since login (flags set by an IMAP server, moved from new/ to cur/
 * by another program), finds it again and updates m; throws ENOENT when it
 * is gone, ELOOP for a symlink, EFTYPE for anything not a regular file.
 */
export function openMessage(maildir: string, m: Message): { fd: number; size: number } {
  const open = (): { fd: number; size: number } => {
    const { fd, st } = openRegular(path.join(maildir, m.dir, m.file));
    return { fd, size: st.size };
  };
  try {
    return open();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const now = locateMessages(maildir, new Set([m.unique])).get(m.unique);
    if (now === undefined) throw err;
    m.dir = now.dir;
    m.file = now.file;
    return open();
  }
}

/**
 * Sends the message body and the terminating "." line (the +OK line is the
 * caller's). With a limiter, stops at TOP's cut (dot-stuffing changes no
 * line's end, so the cut is found on the edited bytes). Returns the wire
 * octets sent, before dot-stuffing: what LIST should have said for RETR.
 */
export async function streamMessage(fd: number, out: Output, limit: TopLimiter | null): Promise<number> {
  const edit = new WireEdit();
  const pacer = new Pacer();
  for (;;) {
    // As much as completes a block, with room for the edits to double it.
    const want = OUTPUT_BLOCK - out.pending;
    const { buf, at } = out.room(2 * want);
    const n = fs.readSync(fd, buf, at, want, null);
    if (n === 0) break;
    const end = edit.edit(buf, at, at + n);
    await out.commit(limit ? at + limit.take(buf.subarray(at, end)).length : end);
    if (limit?.finished) break;
    if (pacer.due()) await pacer.yield();
  }
  await out.bytes(edit.end(limit?.finished));
  return edit.wireOctets;
}

/** Room readWhole needs for a message of size octets on disk: the edits at most double it, then CRLF and the terminator. */
export const wholeRoom = (size: number): number => 2 * size + 5;

/**
 * A whole RETR answer body, for a message of size octets on disk (from
 * openMessage), written into buf (at least wholeRoom(size) octets): the wire
 * form, dot-stuffed, with the terminating "." line, as streamMessage sends
 * it; and the wire octets before stuffing. null when the file grew since.
 */
export function readWhole(fd: number, size: number, buf: Buffer): { body: Buffer; octets: number } | null {
  let n = 0;
  for (;;) {
    const r = fs.readSync(fd, buf, n, size + 1 - n, n);
    if (r === 0) break;
    n += r;
    if (n > size) return null;
  }
  const edit = new WireEdit();
  let end = edit.edit(buf, 0, n);
  end += edit.end().copy(buf, end);
  return { body: buf.subarray(0, end), octets: edit.wireOctets };
}
