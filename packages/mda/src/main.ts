#!/usr/bin/env node
// identity: the recipient
/**
 * popmda: delivers one message from stdin into a maildir and records it in
 * popcache. Run by OpenSMTPD's mda action as the recipient; never as root.
 * Exit codes (sysexits): 0 delivered, 75 try again later, 67 unknown user,
 * 64 usage, 73 cannot create the maildir.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { deliver, ensureMaildir } from '@popd/store/maildir';
import { checkSubdir, parseUsertab } from '@popd/shared/tables';
import { Logger, syslogSink } from '@popd/shared/log';
import { isTransient, errnoCode } from '@popd/store/fsutil';
import { EX_CANTCREAT, EX_NOUSER, EX_OK, EX_TEMPFAIL, EX_USAGE } from '@popd/shared/sysexits';
import { VERSION } from '@popd/shared/version';
import { headerPrefix } from './headers';

const log = new Logger(syslogSink('popmda'));

/** A failure with its exit code; its message is popmda's last line of output. */
class Failure extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

interface Options {
  maildir?: string;
  usertab?: string;
  subdir?: string;
  from?: string;
  rcpt?: string;
  env?: boolean;
}

function parseArgs(argv: string[]): { opts: Options; user?: string } {
  const program = new Command('popmda')
    .description('Deliver one message from standard input into a maildir and index it in popcache.')
    .usage('[-E] [-f sender] [-r recipient] (-m maildir | -u usertab [-e subdir] user)')
    .option('-m, --maildir <maildir>', 'deliver into this maildir')
    .option('-u, --usertab <usertab>', 'find the maildir of user in this usertab')
    .option('-e, --subdir <subdir>', 'with -u: the maildir is maildirstring/subdir')
    .option('-f, --from <sender>', 'prepend "Return-Path: <sender>"')
    .option('-r, --rcpt <recipient>', 'prepend "Delivered-To: recipient"')
    .option('-E, --env', 'take sender and recipient from $SENDER and $ORIGINAL_RECIPIENT (or $RECIPIENT), as OpenSMTPD sets them')
    .argument('[user]', 'user name in usertab (with -u)')
    .version(VERSION, '-V, --version')
    .helpOption('-h, --help')
    .addHelpText(
      'after',
      `
Exit status: 0 delivered, 64 usage, 67 unknown user, 73 cannot create the
maildir, 75 temporary failure (the sender's MTA retries later).

Example (smtpd.conf; smtpd adds Return-Path and Delivered-To itself, so no -E):
  action "pop" mda "/usr/local/bin/popmda -u /etc/mail/usertab -e Maildir %{user.username}" \\
      virtual <virtuals> userbase <usertab>`,
    )
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  program.parse(argv);
  const opts = program.opts<Options>();
  const user = program.args[0];
  if (!!opts.maildir === !!opts.usertab) throw new Failure(EX_USAGE, 'usage: give either -m maildir or -u usertab user');
  if (opts.usertab && !user) throw new Failure(EX_USAGE, 'usage: -u needs a user name');
  if (opts.maildir && (user || opts.subdir)) throw new Failure(EX_USAGE, 'usage: -m takes no user and no -e');
  const badSubdir = opts.subdir === undefined ? null : checkSubdir(opts.subdir);
  if (badSubdir) throw new Failure(EX_USAGE, `usage: ${badSubdir}`);
  return { opts, user };
}

function findMaildir(opts: Options, user: string | undefined): string {
  if (opts.maildir) return path.resolve(opts.maildir);
  let text: string;
  try {
    text = fs.readFileSync(opts.usertab!, 'utf8');
  } catch (err) {
    throw new Failure(EX_TEMPFAIL, `cannot read usertab ${opts.usertab}: ${errnoCode(err)}`);
  }
  const { value: users, problems } = parseUsertab(text, opts.usertab!, opts.subdir);
  const info = users.get(user!);
  if (!info) {
    // A malformed line might be this user's: retry rather than bounce.
    if (problems.length > 0) throw new Failure(EX_TEMPFAIL, `usertab has errors: ${problems[0]}`);
    throw new Failure(EX_NOUSER, `unknown user ${user}`);
  }
  if (info.uid !== process.getuid!()) {
    throw new Failure(EX_TEMPFAIL, `running as uid ${process.getuid!()}, but usertab gives ${user} uid ${info.uid}`);
  }
  return info.maildir;
}

/** Whether path is certainly no maildir: nothing there, or something other than a directory in the way. */
function noMaildirAt(p: string): boolean {
  try {
    return !fs.statSync(p).isDirectory();
  } catch (err) {
    return ['ENOENT', 'ENOTDIR'].includes(errnoCode(err));
  }
}

async function main(): Promise<number> {
  const { opts, user } = parseArgs(process.argv);
  if (process.getuid!() === 0) throw new Failure(EX_TEMPFAIL, 'refusing to run as root: run as the recipient (smtpd.conf userbase)');
  const maildir = findMaildir(opts, user);
  const prefix = headerPrefix({
    sender: opts.from ?? (opts.env ? process.env.SENDER : undefined),
    recipient: opts.rcpt ?? (opts.env ? process.env.ORIGINAL_RECIPIENT || process.env.RECIPIENT : undefined),
  });
  // OpenSMTPD kills an MDA that takes too long: withdraw the half-written message rather than leave it in tmp/.
  const interrupted = new AbortController();
  let signalName = '';
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(sig, () => {
      signalName ||= sig;
      interrupted.abort();
    });
  }
  // Only a maildir that does not exist and cannot be created bounces (73). An
  // existing one with wrong permissions, or one behind a directory this user
  // cannot search, is for the operator to fix while the mail waits (75).
  try {
    ensureMaildir(maildir);
  } catch (err) {
    const code = errnoCode(err);
    if (!isTransient(err) && ['EACCES', 'EPERM', 'ENOTDIR', 'EEXIST', 'EROFS', 'ELOOP', 'ENAMETOOLONG'].includes(code) && noMaildirAt(maildir)) {
      throw new Failure(EX_CANTCREAT, `cannot create maildir ${maildir}: ${code}`);
    }
    throw new Failure(EX_TEMPFAIL, `cannot set up maildir ${maildir}, will retry: ${code}`);
  }
  let result;
  try {
    result = await deliver(maildir, process.stdin, { prefix, signal: interrupted.signal });
  } catch (err) {
    if (interrupted.signal.aborted) throw new Failure(EX_TEMPFAIL, `interrupted by ${signalName}, nothing delivered, will retry`);
    throw new Failure(EX_TEMPFAIL, `delivery to ${maildir} failed, will retry: ${errnoCode(err)}`);
  }
  if (!result.indexed) log.warning(`${result.name}: delivered, but popcache not updated (${errnoCode(result.indexError)}); the next login indexes it`);
  log.info(`delivered ${result.name} to ${maildir}${user ? ` for ${user}` : ''} (${result.octets} octets)`);
  return EX_OK;
}

main().then(
  (status) => process.exit(status),
  (err: unknown) => {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; any other parse error is a usage error (commander has printed it).
      if (err.exitCode !== 0) log.err(err.message.replace(/^error: /, 'usage: '));
      process.exit(err.exitCode === 0 ? EX_OK : EX_USAGE);
    }
    const f = err instanceof Failure ? err : new Failure(EX_TEMPFAIL, `internal error, will retry: ${(err as Error).message}`);
    log.err(f.message);
    process.stderr.write(`popmda: ${f.message}\n`);
    process.exit(f.status);
  },
);
