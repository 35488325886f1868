// identity: the mail user
/**
 * RETR and TOP: a message file streamed through the wire form (the one
 * LF -> CRLF rule), TOP's cut, and dot-stuffing, a block at a time, so that
 * any message size costs the same memory. Each chunk is read straight into
 * the output's buffer and edited there: a chunk that needs no change is
 * never copied, one that does is moved once per rule that changes it.
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
import { WireForm } from '@popd/store/wire';
import { DotStuffer } from './dotstuff';
import { OUTPUT_BLOCK } from '@popd/shared/params';
import { Output } from './output';
import { TopLimiter } from './top';

/**
 * Opens message m read-only and returns the descriptor. When its file was
 * renamed since login (flags set by an IMAP server, moved from new/ to cur/
 * by another program), finds it again and updates m; throws ENOENT when it
 * is gone, ELOOP for a symlink, EFTYPE for anything not a regular file.
 */
export function openMessage(maildir: string, m: Message): number {
  try {
    return openRegular(path.join(maildir, m.dir, m.file)).fd;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const now = locateMessages(maildir, new Set([m.unique])).get(m.unique);
    if (now === undefined) throw err;
    m.dir = now.dir;
    m.file = now.file;
    return openRegular(path.join(maildir, m.dir, m.file)).fd;
  }
}

/**
 * Sends the message body and the terminating "." line (the +OK line is the
 * caller's). With a limiter, stops reading at TOP's cut. Returns the wire
 * octets sent, before dot-stuffing: what LIST should have said for RETR.
 */
export async function streamMessage(fd: number, out: Output, limit: TopLimiter | null): Promise<number> {
  const wire = new WireForm();
  const stuffer = new DotStuffer();
  const pacer = new Pacer();
  let octets = 0;
  /** buf[at, end), in the wire form, through TOP's cut and dot-stuffing into the output. */
  const send = async (buf: Buffer, at: number, end: number): Promise<void> => {
    if (limit) end = at + limit.take(buf.subarray(at, end)).length;
    octets += end - at;
    await out.commit(stuffer.stuff(buf, at, end));
  };
  for (;;) {
    // As much as completes a block; the two rules insert at most one byte per byte read (a CR before an LF, a "." before a ".").
    const want = OUTPUT_BLOCK - out.pending;
    const { buf, at } = out.room(2 * want);
    const n = fs.readSync(fd, buf, at, want, null);
    if (n === 0) break;
    await send(buf, at, wire.convert(buf, at, at + n));
    if (limit?.finished) break;
    if (pacer.due()) await pacer.yield();
  }
  const tail = wire.end();
  if (!limit?.finished && tail.length > 0) {
    const { buf, at } = out.room(2 * tail.length);
    await send(buf, at, at + tail.copy(buf, at));
  }
  await out.bytes(stuffer.end());
  return octets;
}

/** Room readWhole needs for a message of size octets on disk: each byte read causes at most one insertion (a CR before an LF, a "." before a "."), then CRLF and the terminator. */
export const wholeRoom = (size: number): number => 2 * size + 8;

/**
 * A whole RETR answer body, for a message of at most max octets on disk,
 * written into buf (at least wholeRoom(max) octets): the wire form,
 * dot-stuffed, with the terminating "." line, as streamMessage sends it; and
 * the wire octets before stuffing. null when the file is larger, or grew
 * while it was read.
 */
export function readWhole(fd: number, max: number, buf: Buffer): { body: Buffer; octets: number } | null {
  const size = fs.fstatSync(fd).size;
  if (size > max) return null;
  let n = 0;
  for (;;) {
    const r = fs.readSync(fd, buf, n, size + 1 - n, null);
    if (r === 0) break;
    n += r;
    if (n > size) return null;
  }
  const wire = new WireForm();
  let end = wire.convert(buf, 0, n);
  end += wire.end().copy(buf, end);
  const octets = end;
  const stuffer = new DotStuffer();
  end = stuffer.stuff(buf, 0, end);
  end += stuffer.end().copy(buf, end);
  return { body: buf.subarray(0, end), octets };
}
