// identity: the admin
/**
 * The resume record of one import: a file inside the target maildir (its
 * name starts with "." so no maildir reader takes it for mail), one line per
 * event, appended and fsynced:
 *   b <sha256> <base name>     about to deliver a message with this content
 *                              under this base name (chosen beforehand)
 *   d <sha256> <unique name>   delivered it under that name
 * Counting "d" lines per hash makes identical messages in one source import
 * as often as they occur. A final "b" without its "d" is the message an
 * interruption caught mid-delivery: it was delivered if new/ or cur/ holds
 * a file under its base name, and no other delivery can be taken for it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isSafeName, parseName } from '@popd/store/uniquename';

export interface ImportState {
  done: Map<string, number>;
  pending: { hash: string; base: string } | null;
}

/** The record's path, named after the source's real path (call it once the source is open). */
export function stateFile(maildir: string, kind: string, source: string): string {
  const id = crypto.createHash('sha256').update(`${kind}\0${fs.realpathSync(source)}`).digest('hex').slice(0, 16);
  return path.join(maildir, `.popctl-import-${id}`);
}

export function parseState(text: string): ImportState {
  const done = new Map<string, number>();
  let pending: ImportState['pending'] = null;
  for (const line of text.split('\n')) {
    const b = /^b ([0-9a-f]{64}) (\S+)$/.exec(line);
    const d = /^d ([0-9a-f]{64}) \S+$/.exec(line);
    if (b && isSafeName(b[2])) pending = { hash: b[1], base: b[2] };
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

/** The unique name of the message delivered under this base name (new/ or cur/), if it was. */
export function findDelivered(maildir: string, base: string): string | null {
  for (const sub of ['new', 'cur']) {
    let names: string[];
    try {
      names = fs.readdirSync(path.join(maildir, sub));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    // Delivered names are the base name with ",S=...,W=..." after it.
    const found = names.find((n) => n.startsWith(`${base},`));
    if (found !== undefined) return parseName(found).unique;
  }
  return null;
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
