/**
 * The resume record of one import: a file inside the target maildir (its
 * name starts with "." so no maildir reader takes it for mail), one line per
 * event, appended and fsynced:
 *   b <sha256> <size>          about to deliver a message with this content
 *   d <sha256> <unique name>   delivered it under that name
 * Counting "d" lines per hash makes identical messages in one source import
 * as often as they occur. A final "b" without its "d" is the message an
 * interruption caught mid-delivery: it was delivered if new/ or cur/ holds
 * a file with its content under a name no "d" line records.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isSafeName, parseName } from '@popd/shared/uniquename';

export interface ImportState {
  done: Map<string, number>;
  /** Unique names of the messages this import delivered. */
  names: Set<string>;
  pending: { hash: string; size: number } | null;
}

export function stateFile(maildir: string, kind: string, source: string): string {
  const id = crypto.createHash('sha256').update(`${kind}\0${fs.realpathSync(source)}`).digest('hex').slice(0, 16);
  return path.join(maildir, `.popctl-import-${id}`);
}

export function parseState(text: string): ImportState {
  const done = new Map<string, number>();
  const names = new Set<string>();
  let pending: ImportState['pending'] = null;
  for (const line of text.split('\n')) {
    const b = /^b ([0-9a-f]{64}) (\d{1,15})$/.exec(line);
    const d = /^d ([0-9a-f]{64}) (\S+)$/.exec(line);
    if (b) pending = { hash: b[1], size: Number(b[2]) };
    else if (d) {
      done.set(d[1], (done.get(d[1]) ?? 0) + 1);
      names.add(d[2]);
      pending = null;
    }
    // Anything else is a line torn by a crash: the events around it still count.
  }
  return { done, names, pending };
}

export function readState(file: string): ImportState {
  try {
    return parseState(fs.readFileSync(file, 'latin1'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { done: new Map(), names: new Set(), pending: null };
    throw err;
  }
}

export function hashOf(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** The unique name of a message with this content in new/ or cur/ that no "d" line records, if any. */
export function findUnrecorded(maildir: string, p: { hash: string; size: number }, recorded: Set<string>): string | null {
  for (const sub of ['new', 'cur']) {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(path.join(maildir, sub), { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const ent of ents) {
      if (!ent.isFile() || !isSafeName(ent.name)) continue;
      const n = parseName(ent.name);
      if (n.size !== p.size || recorded.has(n.unique)) continue;
      if (hashOf(fs.readFileSync(path.join(maildir, sub, ent.name))) === p.hash) return n.unique;
    }
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
