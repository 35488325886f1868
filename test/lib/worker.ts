/**
 * A real wrkrpop child, started the way popd starts it: stdin 'pipe' (on
 * Unix a socketpair), stderr piped, an IPC channel; then one WorkerStart
 * message. As root the worker confines itself (chroot, drop to MAILUSER);
 * otherwise it runs in unprivileged mode as the invoking user.
 */
import { ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { LogRecord, WorkerStart } from '@popd/shared/ipc';
import { WORKER_NODE_ARGS } from '@popd/popd/workers';
import { BIN, MAILUSER, isRoot } from './util';
import { Pop3Client } from './pop3';

export interface Worker {
  child: ChildProcess;
  /** Our end of the worker's stdin socketpair. */
  io: net.Socket;
  pop: Pop3Client;
  /** Log records the worker sent over IPC, in order. */
  logs: LogRecord[];
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * child.stdin is a write-only net.Socket over our end of the socketpair.
 * popd passes that handle to authpop, which wraps it readable and writable;
 * in one process the same is done by wrapping the handle in a second Socket
 * (an internal field: Node has no public way) and detaching child.stdin, so
 * that child_process does not close our handle when the worker exits while
 * its last replies are still unread.
 */
function reopenStdinDuplex(child: ChildProcess): net.Socket {
  const handle = (child.stdin as unknown as { _handle: object })._handle;
  (child as { stdin: unknown }).stdin = null;
  // `handle` is not in SocketConstructorOpts' type, but net.Socket accepts it (child_process uses it).
  return new net.Socket({ handle, readable: true, writable: true, allowHalfOpen: true } as net.SocketConstructorOpts);
}

const running = new Set<ChildProcess>();

/** Kills the workers still running: call from after(), so that a failed test does not leave one holding the test process open. */
export function killWorkers(): void {
  for (const c of running) c.kill('SIGKILL');
}

/** A started worker waiting for its start message (popd's warm spare). */
export function spawnWorker(): Worker {
  const child = spawn(process.execPath, [...WORKER_NODE_ARGS, BIN.wrkrpop], { stdio: ['pipe', 'ignore', 'pipe', 'ipc'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  const io = reopenStdinDuplex(child);
  const logs: LogRecord[] = [];
  let stderr = '';
  child.on('message', (m: LogRecord) => logs.push(m));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, io, pop: new Pop3Client(io), logs, stderr: () => stderr, exited };
}

export type StartOptions = Partial<Omit<WorkerStart, 't' | 'maildir'>>;

export function startMessage(maildir: string, o: StartOptions = {}): WorkerStart {
  return {
    t: 'start',
    user: o.user ?? 'alice',
    maildir,
    uid: o.uid ?? MAILUSER.uid,
    gid: o.gid ?? MAILUSER.gid,
    drop: o.drop ?? isRoot,
    idleTimeoutMs: o.idleTimeoutMs ?? 600_000,
    verbosity: o.verbosity ?? 1,
  };
}

/** Spawns a worker for maildir and reads its first line. */
export async function login(maildir: string, o: StartOptions = {}): Promise<Worker & { greeting: string }> {
  const w = spawnWorker();
  w.child.send(startMessage(maildir, o));
  const greeting = await w.pop.line();
  return { ...w, greeting };
}

/** Sends QUIT and waits for the answer and the worker's exit. */
export async function quit(w: Worker): Promise<{ answer: string; code: number | null }> {
  const answer = await w.pop.cmd('QUIT');
  const { code } = await w.exited;
  w.io.destroy();
  return { answer, code };
}
