#!/usr/bin/env node
// identity: root
/**
 * Root code: popd, the privilege-separated POP3 server's root process.
 * Closes what it inherited, checks the configuration (one line per
 * problem, exit 1), then runs detached (or in the foreground with -d) with
 * the authpop and wrkrpop processes (docs/architecture.md).
 */
import { spawn } from 'node:child_process';
import { CommanderError } from 'commander';
import { closeInherited } from '@popd/channel';
import { isRoot } from '@popd/shared/privdrop';
import { checkConfig } from './checks';
import { makeLogs } from './logs';
import { Options, parseOptions } from './options';
import { Server } from './server';

/** Set in the environment of the detached copy of popd. */
const DETACHED = 'POPD_DETACHED';

/** Without -d popd runs detached; the command waits for this, prints the error if any, and exits. */
interface Started {
  t: 'started';
  error: string | null;
}

function fail(lines: string[]): never {
  for (const l of lines) process.stderr.write(`popd: ${l}\n`);
  process.exit(1);
}

/** Starts a detached copy of this command and reports how its start-up went. */
function detach(): void {
  const c = spawn(process.execPath, process.argv.slice(1), { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'ipc'], env: { ...process.env, [DETACHED]: '1' } });
  c.on('message', (m: Started) => {
    if (m.error !== null) fail([m.error]);
    process.exit(0);
  });
  c.on('exit', (code, signal) => fail([`exited during start-up with ${signal ?? `status ${code}`}`]));
}

async function serve(o: Options, checked: ReturnType<typeof checkConfig>): Promise<void> {
  const detached = process.env[DETACHED] === '1' && process.send !== undefined;
  const report = (error: string | null): void => {
    if (!detached) return;
    const m: Started = { t: 'started', error };
    process.send!(m);
    process.disconnect();
  };
  const logs = makeLogs(o.foreground, o.verbosity);
  const server = new Server(o, checked.tables, checked.drop, logs);
  try {
    await server.start();
  } catch (err) {
    const msg = (err as Error).message;
    if (!detached) fail([msg]);
    logs.log.err(msg);
    report(msg);
    process.exit(1);
  }
  if (!isRoot()) logs.log.warning(`not started as root: unprivileged mode, no chroot; only usertab users with uid ${process.getuid!()} can log in`);
  process.on('SIGHUP', () => server.reload());
  const stop = (): void => void server.shutdown().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  report(null);
}

/**
 * Like OpenSMTPD's closefrom(): a descriptor popd did not open itself (a
 * wrapper's or a service manager's, on authtab say) must reach no child and
 * serve nobody. closeInherited tells them from Node's own by close-on-exec
 * and by type (a file or directory is never Node's); the channel from the
 * popd command that detached this one is kept until the start is reported.
 */
function closeLeaked(): void {
  const channel = (process.channel as unknown as { fd?: number } | undefined)?.fd;
  closeInherited(channel === undefined ? [] : [channel]);
}

function main(): void {
  closeLeaked();
  let o: Options;
  try {
    o = parseOptions(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 1); // commander printed why
    throw err;
  }
  const checked = checkConfig(o);
  if (o.check) {
    if (checked.problems.length > 0) fail(checked.problems);
    process.stdout.write('configuration OK\n');
    process.exit(0);
  }
  if (checked.problems.length > 0) fail(checked.problems);
  if (!o.foreground && process.env[DETACHED] !== '1') {
    detach();
    return;
  }
  void serve(o, checked);
}

main();
