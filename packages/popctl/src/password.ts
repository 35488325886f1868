// identity: the admin
/**
 * Reading a password: from the terminal without echo (asked twice), or the
 * first line of standard input when it is not a terminal (for scripts).
 */
import fs from 'node:fs';
import { EX_DATAERR, EX_NOINPUT } from '@popd/shared/sysexits';
import { Failure } from './failure';

/** Reads one line from the terminal with echo off; Ctrl-C or Ctrl-D aborts. */
function askNoEcho(prompt: string): Promise<string> {
  const tty = process.stdin;
  // Echo goes off before the prompt appears, or a fast typist's first keys would show.
  tty.setRawMode(true);
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let line = '';
    const done = (err: Error | null): void => {
      tty.setRawMode(false);
      tty.pause();
      tty.removeListener('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(line);
    };
    const onData = (buf: Buffer): void => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done(null);
        if (ch === '\u0003' || ch === '\u0004') return done(new Failure(EX_NOINPUT, 'aborted'));
        if (ch === '\u007f' || ch === '\b') line = [...line].slice(0, -1).join('');
        else if (ch === '\u0015') line = ''; // Ctrl-U, as the terminal would
        else line += ch;
      }
    };
    tty.resume();
    tty.on('data', onData);
  });
}

/** The first line of a non-terminal stdin, without its line ending. */
function firstLine(): string {
  const text = fs.readFileSync(0, 'utf8');
  const nl = text.indexOf('\n');
  return (nl === -1 ? text : text.slice(0, nl)).replace(/\r$/, '');
}

export async function readPassword(): Promise<string> {
  let pw: string;
  if (process.stdin.isTTY) {
    pw = await askNoEcho('Password: ');
    if ((await askNoEcho('Again: ')) !== pw) throw new Failure(EX_DATAERR, 'passwords do not match');
  } else {
    pw = firstLine();
  }
  if (pw === '') throw new Failure(EX_DATAERR, 'empty password');
  return pw;
}
