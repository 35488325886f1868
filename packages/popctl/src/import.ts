/**
 * popctl import: brings an mbox spool or another maildir into a maildir,
 * byte-exact, through the same delivery path as popmda, resumable without
 * duplicates (see importstate.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { deliver } from '@popd/shared/maildir';
import { tryLock, tryShareLock } from '@popd/shared/lock';
import { isSafeName, newBaseName, parseName } from '@popd/shared/uniquename';
import { EX_DATAERR, EX_NOINPUT, EX_TEMPFAIL } from '@popd/shared/sysexits';
import { mboxMessages, NotMbox } from './mbox';
import { findDelivered, hashOf, readState, StateWriter, stateFile } from './importstate';
import { becomeOwnerOf } from './owner';
import { Failure } from './failure';
import { Progress } from './progress';

export type SourceKind = 'mbox' | 'maildir';

export interface ImportSummary {
  imported: number;
  skipped: number;
  bytes: number;
}

interface SourceMessage {
  data: Buffer;
  position: number;
}

interface Source {
  totalBytes: number;
  messages: AsyncIterable<SourceMessage>;
}

/** The regular files of a maildir's cur/ and new/ in delivery order, as opened files. */
function maildirSource(dir: string): Source {
  const files: Array<{ file: string; time: number; name: string; size: number }> = [];
  for (const sub of ['cur', 'new']) {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(path.join(dir, sub), { withFileTypes: true });
    } catch {
      throw new Failure(EX_NOINPUT, `${dir}: not a maildir (no readable ${sub}/)`);
    }
    for (const e of ents) {
      if (!e.isFile() || !isSafeName(e.name)) continue;
      const file = path.join(dir, sub, e.name);
      const st = fs.lstatSync(file);
      const p = parseName(e.name);
      files.push({ file, name: p.unique, time: p.time ?? Math.floor(st.mtimeMs * 1000), size: st.size });
    }
  }
  files.sort((a, b) => a.time - b.time || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  async function* read(): AsyncGenerator<SourceMessage> {
    let position = 0;
    for (const f of files) {
      let data: Buffer;
      try {
        // O_NOFOLLOW: a symlink planted in the source never pulls another file in.
        const fd = fs.openSync(f.file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        try {
          data = fs.readFileSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed meanwhile
        throw err;
      }
      position += f.size;
      yield { data, position };
    }
  }
  return { totalBytes: files.reduce((s, f) => s + f.size, 0), messages: read() };
}

/**
 * An mbox opened now (before any privilege change), read as it is consumed,
 * up to the size it had: mail appended meanwhile waits for the next run.
 * A shared lock keeps out a delivery agent that locks the mbox with flock(2)
 * (BSD mail.local); one that does not should be stopped during the import.
 */
function mboxSource(file: string): Source {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY);
  } catch (err) {
    throw new Failure(EX_NOINPUT, `${file}: cannot open: ${(err as NodeJS.ErrnoException).code}`);
  }
  const st = fs.fstatSync(fd);
  if (!st.isFile()) throw new Failure(EX_NOINPUT, `${file}: not a regular file`);
  if (!tryShareLock(fd)) throw new Failure(EX_TEMPFAIL, `${file}: locked by a delivery, try again later`);
  const stream = st.size === 0 ? Readable.from([]) : fs.createReadStream('', { fd, start: 0, end: st.size - 1, highWaterMark: 1 << 20 });
  return { totalBytes: st.size, messages: mboxMessages(stream) };
}

export async function importMail(kind: SourceKind, source: string, maildir: string, log: (line: string) => void): Promise<ImportSummary> {
  if (!fs.existsSync(source)) throw new Failure(EX_NOINPUT, `${source}: no such file or directory`);
  if (path.resolve(source) === path.resolve(maildir)) throw new Failure(EX_DATAERR, 'source and target are the same maildir');
  const src = kind === 'mbox' ? mboxSource(source) : null;
  const sfile = stateFile(maildir, kind, source);
  becomeOwnerOf(maildir);
  const { totalBytes, messages } = src ?? maildirSource(source);
  fs.mkdirSync(maildir, { recursive: true, mode: 0o700 });
  // Two imports of one source into one maildir would each deliver everything.
  const running = tryLock(sfile);
  if (!running) throw new Failure(EX_TEMPFAIL, `an import from ${source} into ${maildir} is already running`);
  const state = readState(sfile);
  const writer = new StateWriter(sfile);
  if (state.pending) {
    const name = findDelivered(maildir, state.pending.base);
    if (name !== null) {
      state.done.set(state.pending.hash, (state.done.get(state.pending.hash) ?? 0) + 1);
      writer.write(`d ${state.pending.hash} ${name}`);
    }
  }
  const progress = Progress.forStderr(totalBytes);
  const seen = new Map<string, number>();
  const sum: ImportSummary = { imported: 0, skipped: 0, bytes: 0 };
  try {
    for await (const m of messages) {
      const hash = hashOf(m.data);
      const n = (seen.get(hash) ?? 0) + 1;
      seen.set(hash, n);
      if (n <= (state.done.get(hash) ?? 0)) {
        sum.skipped++;
      } else {
        const base = newBaseName();
        writer.write(`b ${hash} ${base}`);
        const { name } = await deliver(maildir, Readable.from([m.data]), { base });
        writer.write(`d ${hash} ${parseName(name).unique}`);
        sum.imported++;
        sum.bytes += m.data.length;
      }
      progress?.update(m.position, sum.imported + sum.skipped);
    }
  } catch (err) {
    if (err instanceof NotMbox) throw new Failure(EX_DATAERR, `${source}: ${err.message}`);
    throw err;
  } finally {
    writer.close();
    running.release();
    if (progress) {
      progress.update(totalBytes, sum.imported + sum.skipped, true);
      progress.end();
    }
  }
  log(`imported ${sum.imported} messages (${sum.bytes} bytes) from ${source} into ${maildir}; ${sum.skipped} already imported`);
  return sum;
}
