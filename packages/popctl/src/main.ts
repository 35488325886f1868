#!/usr/bin/env node
// identity: the admin
/**
 * popctl: the administrator's tool for popd. Subcommands: encrypt, check,
 * reindex, import. Exit codes follow sysexits(3).
 */
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { errnoCode, isTransient } from '@popd/store/fsutil';
import { EX_CONFIG, EX_IOERR, EX_OK, EX_TEMPFAIL, EX_USAGE } from '@popd/shared/sysexits';
import { checkSubdir } from '@popd/shared/tables';
import { VERSION } from '@popd/shared/version';
import { checkTables } from './check';
import { DEFAULT_BCRYPT_COST } from '@popd/shared/params';
import { encrypt, isTruncated, parseCost } from './encrypt';
import { Failure } from './failure';
import { importMail, SourceKind } from './import';
import { readPassword } from './password';
import { OwnerOptions } from './owner';
import { reindex } from './reindex';

const out = (line: string): void => void process.stdout.write(line + '\n');
const warn = (line: string): void => void process.stderr.write(`popctl: ${line}\n`);

/** -u and -e of reindex and import, checked. */
function ownerOptions(o: OwnerOptions): OwnerOptions {
  if (o.subdir !== undefined) {
    if (o.usertab === undefined) throw new Failure(EX_USAGE, '-e needs -u');
    const bad = checkSubdir(o.subdir);
    if (bad !== null) throw new Failure(EX_USAGE, bad);
  }
  return o;
}

function program(): Command {
  const p = new Command('popctl')
    .description('Administer popd: hash passwords, check the tables, reindex and import maildirs.')
    .version(VERSION, '-V, --version')
    .helpOption('-h, --help')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .addHelpText('after', '\nExit status follows sysexits(3): 0 success, 64 usage, 65 bad data, 66 no input,\n67 no such user in usertab, 75 try again later, 77 permission, 78 configuration problems. See popctl(8).');

  p.command('encrypt')
    .description('print a bcrypt hash of a password read from the terminal (or the first line of stdin)')
    .option('-c, --cost <cost>', 'bcrypt cost, 4 to 31', String(DEFAULT_BCRYPT_COST))
    .action(async (o: { cost: string }) => {
      const cost = parseCost(o.cost);
      const pw = await readPassword();
      if (isTruncated(pw)) warn('warning: bcrypt uses only the first 72 bytes of this password');
      out(encrypt(pw, cost));
    });

  p.command('check')
    .description('report every problem of authtab and usertab, and of the maildirs they name')
    .requiredOption('-a, --authtab <authtab>', 'the authtab popd reads')
    .requiredOption('-u, --usertab <usertab>', 'the usertab popd reads')
    .option('-e, --subdir <subdir>', 'as popd -e: the maildir is maildirstring/subdir')
    .action((o: { authtab: string; usertab: string; subdir?: string }) => {
      const r = checkTables(o.authtab, o.usertab, o.subdir);
      for (const problem of r.problems) out(problem);
      if (r.problems.length > 0) throw new Failure(EX_CONFIG, `${r.problems.length} problem${r.problems.length === 1 ? '' : 's'} found`);
      out(`${r.users} user${r.users === 1 ? '' : 's'}, no problems`);
    });

  p.command('reindex')
    .description('rebuild the popcache of a maildir (safe during deliveries; refused during a POP session)')
    .argument('<maildir>', 'the maildir')
    .option('-u, --usertab <usertab>', "the maildir is a user's in this usertab: its uid:gid is the owner's")
    .option('-e, --subdir <subdir>', 'with -u, as popd -e: the maildir is maildirstring/subdir')
    .action(async (maildir: string, o: OwnerOptions) => {
      const r = await reindex(path.resolve(maildir), ownerOptions(o));
      out(`${maildir}: ${r.messages} messages indexed, ${r.fixed} entries added or corrected`);
    });

  p.command('import')
    .description('import an mbox or a maildir into a maildir, byte-exact and resumable')
    .argument('<kind>', '"mbox" or "maildir"')
    .argument('<source>', 'the mbox file or maildir to read')
    .argument('<maildir>', 'the maildir to deliver into')
    .option('-u, --usertab <usertab>', "the maildir is a user's in this usertab: its uid:gid is the owner's")
    .option('-e, --subdir <subdir>', 'with -u, as popd -e: the maildir is maildirstring/subdir')
    .addHelpText(
      'after',
      `
An mbox is read as mboxrd: a message starts at a "From " line at the start
of the file or after an empty line; the empty line before the next one is
dropped; ">From ", ">>From "... lose one ">". Run the same command again
after an interruption: what was imported is skipped. As root, popctl
becomes the owner of the target maildir before it opens the source, and
refuses a maildir that is a symbolic link or whose path another user could
change; a source that is a symbolic link or not a regular file is refused.`,
    )
    .action(async (kind: string, source: string, maildir: string, o: OwnerOptions) => {
      if (kind !== 'mbox' && kind !== 'maildir') throw new Failure(EX_USAGE, `import: kind must be "mbox" or "maildir", not "${kind}"`);
      await importMail(kind as SourceKind, path.resolve(source), path.resolve(maildir), ownerOptions(o), out);
    });
  return p;
}

program()
  .parseAsync(process.argv)
  .then(
    () => process.exit(EX_OK),
    (err: unknown) => {
      if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EX_OK : EX_USAGE); // commander printed why
      let f: Failure;
      if (err instanceof Failure) f = err;
      else if (isTransient(err)) f = new Failure(EX_TEMPFAIL, `${(err as Error).message}; try again later`);
      else if ((err as NodeJS.ErrnoException).code) f = new Failure(EX_IOERR, `${(err as Error).message} (${errnoCode(err)})`);
      else f = new Failure(EX_IOERR, (err as Error).message);
      warn(f.message);
      process.exit(f.status);
    },
  );
