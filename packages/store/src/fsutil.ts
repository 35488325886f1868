// identity: the mail user, the recipient, the admin
import fs from 'node:fs';

/** Makes a directory entry change durable (rename, link, unlink). */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Not a regular file (a directory, FIFO, device or socket where a file was expected). */
export class NotRegular extends Error {
  code = 'EFTYPE';
  constructor(file: string) {
    super(`${file}: not a regular file`);
  }
}

/**
 * Opens a file that someone else may have planted, for reading: no link is
 * followed (ELOOP on every system: FreeBSD's EMLINK is made ELOOP here, so
 * that callers test one code), a FIFO does not hang the open
 * (O_NONBLOCK, no effect on regular files), and anything but a regular
 * file is refused (NotRegular, after the descriptor is closed). The caller
 * closes fd.
 */
export function openRegular(file: string): { fd: number; st: fs.Stats } {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EMLINK') e.code = 'ELOOP';
    throw e;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new NotRegular(file);
    return { fd, st };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/** The errno codes that mean "try again later" for a mail delivery or a mailbox open. */
const TRANSIENT = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE', 'ENOMEM', 'EINTR', 'ETIMEDOUT', 'ELOCKED']);

export function isTransient(err: unknown): boolean {
  return TRANSIENT.has((err as NodeJS.ErrnoException)?.code ?? '');
}

export function errnoCode(err: unknown): string {
  return (err as NodeJS.ErrnoException)?.code ?? 'EUNKNOWN';
}
