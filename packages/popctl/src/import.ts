// identity: the admin
/**
 * popctl import: brings an mbox spool or another maildir into a maildir,
 * byte-exact, through the same delivery path as popmda, resumable without
 * duplicates (see importstate.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { deliver } from '@popd/store/maildir';
import { tryLock, tryShareLock } from '@popd/store/lock';
import { isSafeName, newBaseName, parseName } from '@popd/store/uniquename';
import { errnoCode, NotRegular, openRegular } from '@popd/store/fsutil';
import { isRoot } from '@popd/shared/privdrop';
import { EX_DATAERR, EX_NOINPUT, EX_NOPERM, EX_TEMPFAIL } from '@popd/shared/sysexits';
import { mboxMessages, NotMbox } from './mbox';
import { findDelivered, hashOf, readState, StateWriter, stateFile } from './importstate';
import { becomeOwnerOf, OwnerOptions } from './owner';
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

/** Why a source cannot be opened, as a Failure. asOwner: popctl was root and is now the target maildir's owner. */
function cannotOpen(file: string, err: unknown, asOwner: boolean): Failure {
  const code = errnoCode(err);
  if (code === 'ELOOP') return new Failure(EX_NOINPUT, `${file}: is a symbolic link; name the file it points to`);
  if (code === 'ENOENT') return new Failure(EX_NOINPUT, `${file}: no such file or directory`);
  if (code === 'EACCES' || code === 'EPERM') {
    const why = asOwner ? `; as root, popctl reads the source as the target maildir's owner (uid ${process.getuid!()}): give that uid read access, e.g. a copy it owns` : '';
    return new Failure(EX_NOPERM, `${file}: permission denied${why}`);
  }
  return new Failure(EX_NOINPUT, `${file}: cannot open (${code})`);
}

/** Why dir is not a directory of its own (missing, a symbolic link, something else), or null. */
function notADir(dir: string, asOwner: boolean): string | null {
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(dir, { throwIfNoEntry: false });
  } catch (err) {
    throw cannotOpen(dir, err, asOwner);
  }
  if (st === undefined) return 'does not exist';
  if (st.isSymbolicLink()) return 'is a symbolic link; name the directory it points to';
  return st.isDirectory() ? null : 'is not a directory';
}

/** The regular files of a maildir's cur/ and new/ in delivery order, opened as they are read. */
function maildirSource(dir: string, asOwner: boolean): Source {
  const top = notADir(dir, asOwner);
  if (top !== null) throw new Failure(EX_NOINPUT, `${dir}: ${top}`);
  const files: Array<{ file: string; time: number; name: string; size: number }> = [];
  for (const sub of ['cur', 'new']) {
    const why = notADir(path.join(dir, sub), asOwner);
    if (why !== null) throw new Failure(EX_NOINPUT, `${dir}: not a maildir (${sub}/ ${why})`);
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(path.join(dir, sub), { withFileTypes: true });
    } catch (err) {
      throw cannotOpen(path.join(dir, sub), err, asOwner);
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
        // A symlink or FIFO put in place of a listed file is skipped, like one listed as such.
        const { fd } = openRegular(f.file);
        try {
          data = fs.readFileSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      } catch (err) {
        if (err instanceof NotRegular || ['ENOENT', 'ELOOP'].includes(errnoCode(err))) continue; // removed or replaced meanwhile
        throw err;
      }
      position += f.size;
      yield { data, position };
    }
  }
  return { totalBytes: files.reduce((s, f) => s + f.size, 0), messages: read() };
}

/**
 * An mbox, read as it is consumed, up to the size it had when opened: mail
 * appended meanwhile waits for the next run. A shared lock keeps out a
 * delivery agent that locks the mbox with flock(2) (BSD mail.local); one
 * that does not should be stopped during the import.
 */
function mboxSource(file: string, asOwner: boolean): Source {
  let fd: number;
  let st: fs.Stats;
  try {
    ({ fd, st } = openRegular(file));
  } catch (err) {
    if (err instanceof NotRegular) throw new Failure(EX_NOINPUT, `${file}: not a regular file`);
    throw cannotOpen(file, err, asOwner);
  }
  if (!tryShareLock(fd)) throw new Failure(EX_TEMPFAIL, `${file}: locked by a delivery, try again later`);
  const stream = st.size === 0 ? Readable.from([]) : fs.createReadStream('', { fd, start: 0, end: st.size - 1, highWaterMark: 1 << 20 });
  return { totalBytes: st.size, messages: mboxMessages(stream) };
}

/**
 * As root, popctl becomes the target maildir's owner before it opens the
 * source: the kernel then lets it read only what that uid may read, so a
 * user's link (or a hard link, or a directory it can swap) never brings in
 * a file that only root could read.
 */
export async function importMail(kind: SourceKind, source: string, target: string, o: OwnerOptions, log: (line: string) => void): Promise<ImportSummary> {
  if (path.resolve(source) === path.resolve(target)) throw new Failure(EX_DATAERR, 'source and target are the same maildir');
  const asOwner = isRoot();
  const maildir = becomeOwnerOf(target, o, false);
  const { totalBytes, messages } = kind === 'mbox' ? mboxSource(source, asOwner) : maildirSource(source, asOwner);
  const sfile = stateFile(maildir, kind, source);
  fs.mkdirSync(maildir, { recursive: true, mode: 0o700 });
  // Two imports of one source into one maildir would each deliver everything.
  const running = tryLock(sfile);
  if (!running) throw new Failure(EX_TEMPFAIL, `an import from ${source} into ${target} is already running`);
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
  log(`imported ${sum.imported} messages (${sum.bytes} bytes) from ${source} into ${target}; ${sum.skipped} already imported`);
  return sum;
}
