/**
 * RETR and TOP: a message file streamed through the wire form (the one
 * LF -> CRLF rule), TOP's cut, and dot-stuffing, a chunk at a time, so that
 * any message size costs the same memory. Files in the maildir are hostile:
 * never followed through a symlink, never anything but a regular file.
 * File I/O is synchronous on purpose: the process serves one client, and
 * thread-pool round trips for open, fstat, read and close cost more than
 * the reads themselves (pipelined RETRs of small messages ran at a third of
 * the speed).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Message } from '@popd/shared/maildir';
import { isSafeName, parseName } from '@popd/shared/uniquename';
import { WireForm } from '@popd/shared/wire';
import { DotStuffer } from './dotstuff';
import { Output } from './output';
import { TopLimiter } from './top';

const CHUNK = 128 * 1024;
// O_NONBLOCK: a FIFO swapped in for a message must not hang the open; no effect on regular files.
const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

export class NotRegular extends Error {
  code = 'EFTYPE';
  constructor() {
    super('not a regular file');
  }
}

function openRegular(file: string): number {
  const fd = fs.openSync(file, OPEN_FLAGS);
  try {
    if (!fs.fstatSync(fd).isFile()) throw new NotRegular();
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return fd;
}

/** The current cur/ name of a unique name, when another program changed its flags since login. */
function locate(maildir: string, unique: string): string | null {
  for (const d of fs.readdirSync(path.join(maildir, 'cur'), { withFileTypes: true })) {
    if (d.isFile() && isSafeName(d.name) && parseName(d.name).unique === unique) return d.name;
  }
  return null;
}

/**
 * Opens message m read-only and returns the descriptor. When its file was renamed since login (flags set
 * by an IMAP server), finds it again and updates m.file; throws ENOENT when
 * it is gone, ELOOP for a symlink, EFTYPE for anything not a regular file.
 */
export function openMessage(maildir: string, m: Message): number {
  try {
    return openRegular(path.join(maildir, 'cur', m.file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const now = locate(maildir, m.unique);
    if (now === null) throw err;
    m.file = now;
    return openRegular(path.join(maildir, 'cur', now));
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
  let octets = 0;
  const send = async (w: Buffer): Promise<void> => {
    const part = limit ? limit.take(w) : w;
    octets += part.length;
    await out.data(stuffer.chunk(part));
  };
  for (;;) {
    // A fresh buffer each time: the previous one may still sit in the socket's queue.
    const buf = Buffer.allocUnsafe(CHUNK);
    const bytesRead = fs.readSync(fd, buf, 0, CHUNK, null);
    if (bytesRead === 0) break;
    await send(wire.chunk(buf.subarray(0, bytesRead)));
    if (limit?.finished) break;
  }
  if (!limit?.finished) await send(wire.end());
  await out.data(stuffer.end());
  return octets;
}
