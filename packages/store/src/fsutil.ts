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

/** The errno codes that mean "try again later" for a mail delivery or a mailbox open. */
const TRANSIENT = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE', 'ENOMEM', 'EINTR', 'ETIMEDOUT', 'ELOCKED']);

export function isTransient(err: unknown): boolean {
  return TRANSIENT.has((err as NodeJS.ErrnoException)?.code ?? '');
}

export function errnoCode(err: unknown): string {
  return (err as NodeJS.ErrnoException)?.code ?? 'EUNKNOWN';
}
