/**
 * A real wrkrpop child, started the way popd starts it: its channel (a
 * SOCK_SEQPACKET socketpair) as descriptor 3, stderr piped; then a confine
 * message and a session with one end of a stream socketpair beside it. As
 * root the worker confines itself (chroot, drop to MAILUSER); otherwise it
 * runs in unprivileged mode as the invoking user.
 */
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { Channel, socketpair } from '@popd/channel';
import { decode, encode, LogRecord, PopdToWorker, PROTOCOL, WorkerConfine, WorkerSession } from '@popd/shared/ipc';
import { WORKER_NODE_ARGS } from '@popd/popd/wrkrpop-supervisor';
import { BIN, MAILUSER, isRoot } from './util';
import { Pop3Client } from './pop3';

export interface Worker {
  child: ChildProcess;
  /** popd's end of the worker's channel. */
  channel: Channel;
  /** Our end of the first session's socketpair; the worker's end goes with start(). */
  io: net.Socket;
  /** The worker's end, until start() sends it. */
  sessionFd: number | null;
  pop: Pop3Client;
  /** Log records the worker sent, in order. */
  logs: LogRecord[];
  /** Every message it sent, in order (ready, ended, log). */
  messages: Record<string, unknown>[];
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  send(m: PopdToWorker, fd?: number): boolean;
}

const running = new Set<ChildProcess>();
const spawned = new Set<Worker>();

/** Kills the workers still running and closes our ends of their sockets: call from after(), so that nothing holds the test process open. */
export function killWorkers(): void {
  for (const c of running) c.kill('SIGKILL');
  for (const w of spawned) {
    w.io.destroy();
    if (w.sessionFd !== null) fs.closeSync(w.sessionFd);
    w.sessionFd = null;
  }
  spawned.clear();
}

/**
 * A started worker waiting for its first message (popd's warm spare). Our
 * end of its session ends when the worker's does, as authpop's relay does,
 * unless keepOpen: then it stays open, as a client that never ends its side.
 */
export function spawnWorker(o: { keepOpen?: boolean } = {}): Worker {
  const [mine, theirs] = socketpair('seqpacket');
  const child = spawn(process.execPath, [...WORKER_NODE_ARGS, BIN.wrkrpop], { stdio: ['ignore', 'ignore', 'pipe', theirs] });
  fs.closeSync(theirs);
  running.add(child);
  const channel = new Channel(mine);
  const [ours, sessionFd] = socketpair('stream');
  // As authpop's relay: the worker's end ends ours, which ends the worker's wait for it (LineInput.drain).
  const io = new net.Socket({ fd: ours, readable: true, writable: true, allowHalfOpen: o.keepOpen === true });
  const logs: LogRecord[] = [];
  const messages: Record<string, unknown>[] = [];
  let stderr = '';
  channel.on('message', (data: Buffer, fd: number | null) => {
    if (fd !== null) fs.closeSync(fd);
    const m = decode(data);
    if (m === null) return;
    messages.push(m);
    if (m.t === 'log') logs.push(m as unknown as LogRecord);
  });
  channel.on('error', () => undefined);
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      running.delete(child);
      // What it sent last may still be in the channel: read it before the test looks.
      setTimeout(() => {
        channel.close();
        resolve({ code, signal });
      }, 50);
    }),
  );
  const w: Worker = {
    child,
    channel,
    io,
    sessionFd,
    pop: new Pop3Client(io),
    logs,
    messages,
    stderr: () => stderr,
    exited,
    send: (m, fd) => channel.send(encode(m), fd),
  };
  spawned.add(w);
  return w;
}

export type StartOptions = Partial<Omit<WorkerConfine, 't' | 'v' | 'root'>> & { user?: string };

/** popd's messages for one session in per-session mode: confine to the maildir itself, the session, and retire. */
export function startMessages(maildir: string, o: StartOptions = {}): [WorkerConfine, WorkerSession] {
  return [
    {
      t: 'confine',
      v: PROTOCOL,
      uid: o.uid ?? MAILUSER.uid,
      gid: o.gid ?? MAILUSER.gid,
      root: maildir,
      drop: o.drop ?? isRoot,
      idleTimeoutMs: o.idleTimeoutMs ?? 600_000,
      verbosity: o.verbosity ?? 1,
    },
    { t: 'session', sid: 's1', user: o.user ?? 'alice', maildir: '' },
  ];
}

/** Sends w its one session (as per-session mode does); it exits after it. */
export function start(w: Worker, maildir: string, o: StartOptions = {}): void {
  const [confine, session] = startMessages(maildir, o);
  w.send(confine);
  w.send(session, w.sessionFd!);
  fs.closeSync(w.sessionFd!);
  w.sessionFd = null;
  w.send({ t: 'retire' });
}

/**
 * Spawns a worker for maildir and reads its first line. Lines in ahead are
 * written before the worker has the session: they wait in its input from
 * the start, whenever the test itself gets to run.
 */
export async function login(maildir: string, o: StartOptions = {}, ahead = ''): Promise<Worker & { greeting: string }> {
  const w = spawnWorker();
  if (ahead !== '') w.pop.sendRaw(ahead);
  start(w, maildir, o);
  const greeting = await w.pop.line();
  return Object.assign(w, { greeting });
}

/** Sends QUIT and waits for the answer and the worker's exit. */
export async function quit(w: Worker): Promise<{ answer: string; code: number | null }> {
  const answer = await w.pop.cmd('QUIT');
  const { code } = await w.exited;
  w.io.destroy();
  return { answer, code };
}
