/**
 * The resume record of one import: a file inside the target maildir (its
 * name starts with "." so no maildir reader takes it for mail), one line per
 * event, appended and fsynced:
 *   b <sha256> <size> <ms>   about to deliver a message with this content
 *   d <sha256>               delivered it
 * Counting "d" lines per hash makes identical messages in one source import
 * as often as they occur; a final "b" without its "d" is the message an
 * interruption caught mid-delivery, resolved by looking for it in the maildir.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isSafeName, parseName } from '@popd/shared/uniquename';

export interface ImportState {
  done: Map<string, number>;
  pending: { hash: string; size: number; ms: number } | null;
}

export function stateFile(maildir: string, kind: string, source: string): string {
  const id = crypto.createHash('sha256').update(`${kind}\0${fs.realpathSync(source)}`).digest('hex').slice(0, 16);
  return path.join(maildir, `.popctl-import-${id}`);
}

export function parseState(text: string): ImportState {
  const done = new Map<string, number>();
  let pending: ImportState['pending'] = null;
  for (const line of text.split('\n')) {
    const b = /^b ([0-9a-f]{64}) (\d+) (\d+)$/.exec(line);
    const d = /^d ([0-9a-f]{64})$/.exec(line);
    if (b) pending = { hash: b[1], size: Number(b[2]), ms: Number(b[3]) };
    else if (d) {
      done.set(d[1], (done.get(d[1]) ?? 0) + 1);
      pending = null;
    }
    // Anything else is a line torn by a crash: the events around it still count.
  }
  return { done, pending };
}

export function readState(file: string): ImportState {
  try {
    return parseState(fs.readFileSync(file, 'latin1'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { done: new Map(), pending: null };
    throw err;
  }
}

export function hashOf(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** Whether a message with this content and size was delivered into new/ or cur/ at or after ms. */
export function deliveredSince(maildir: string, p: { hash: string; size: number; ms: number }): boolean {
  for (const sub of ['new', 'cur']) {
    for (const ent of fs.readdirSync(path.join(maildir, sub), { withFileTypes: true })) {
      if (!ent.isFile() || !isSafeName(ent.name)) continue;
      const n = parseName(ent.name);
      if (n.size !== p.size || (n.time !== undefined && n.time < p.ms * 1000 - 1e6)) continue;
      if (hashOf(fs.readFileSync(path.join(maildir, sub, ent.name))) === p.hash) return true;
    }
  }
  return false;
}

/** Appends events durably. */
export class StateWriter {
  private fd: number;
  constructor(file: string) {
    this.fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
  }
  write(line: string): void {
    fs.writeSync(this.fd, line + '\n', null, 'latin1');
    fs.fsyncSync(this.fd);
  }
  close(): void {
    fs.closeSync(this.fd);
  }
}
