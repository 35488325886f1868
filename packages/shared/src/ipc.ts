/**
 * Every message that crosses a process boundary, in one union. Transport:
 * Node's IPC channel (a Unix socketpair); sockets travel beside a message as
 * passed file descriptors. popd treats what authpop and wrkrpop send as
 * hostile: parseFromChild checks the shape before anything is used.
 */
import { Level, isLevel } from './log';

/** A log record from a chrooted child; popd writes it under the child's ident and pid. */
export interface LogRecord {
  t: 'log';
  level: Level;
  msg: string;
}

// ---- popd -> authpop ----

/** First message: authpop reads cert and key as root, then chroots and drops. */
export interface AuthpopConfig {
  t: 'config';
  cert: string;
  key: string;
  /** Chroot directory and user to become; null in unprivileged mode. */
  drop: { root: string; uid: number; gid: number } | null;
  loginTimeoutMs: number;
  /** Delay after a failed login attempt. */
  failDelayMs: number;
  verbosity: number;
}

/** A client socket (passed as a handle), paused, never read by popd. */
export interface NewConnection {
  t: 'conn';
  id: string;
  address: string;
  port: number;
  /** Implicit TLS, or plain POP3 that must STLS before credentials. */
  mode: 'tls' | 'stls';
  /** When set, authpop answers -ERR [SYS/TEMP] with this text and closes. */
  refuse?: string;
}

/** SYS/PERM: right password, but this server cannot serve that user (unprivileged mode, another uid). */
export type VerdictCode = 'AUTH' | 'IN-USE' | 'SYS/TEMP' | 'SYS/PERM';

/** popd's answer to an AuthRequest. With ok, the worker's socket is passed beside it. */
export type AuthVerdict =
  | { t: 'verdict'; id: string; ok: true; user: string }
  | { t: 'verdict'; id: string; ok: false; code: VerdictCode; text: string };

/** SIGHUP: a renewed certificate and key (PEM), checked by popd, for connections from now on. */
export interface TlsReload {
  t: 'tls';
  cert: string;
  key: string;
}

export interface Shutdown {
  t: 'shutdown';
}

// ---- authpop -> popd ----

export interface Ready {
  t: 'ready';
}

export interface AuthRequest {
  t: 'auth';
  id: string;
  user: string;
  pass: string;
}

/** A connection authpop held has ended (frees popd's per-address slot). */
export interface ConnClosed {
  t: 'closed';
  id: string;
}

// ---- popd -> wrkrpop ----

/** Which mailbox a (possibly pre-started) worker serves, as whom. */
export interface WorkerStart {
  t: 'start';
  user: string;
  maildir: string;
  uid: number;
  gid: number;
  /** chroot into the maildir and drop to uid:gid (popd is root). */
  drop: boolean;
  idleTimeoutMs: number;
  verbosity: number;
}

// ---- popd (detached) -> the popd command that started it ----

/** Without -d popd runs detached; the command waits for this, prints the error if any, and exits. */
export interface Started {
  t: 'started';
  error: string | null;
}

export type PopdToAuthpop = AuthpopConfig | NewConnection | AuthVerdict | TlsReload | Shutdown;
export type AuthpopToPopd = Ready | AuthRequest | ConnClosed | LogRecord;
export type PopdToWorker = WorkerStart;
export type WorkerToPopd = LogRecord;
export type PopdToParent = Started;
export type IpcMessage = PopdToAuthpop | AuthpopToPopd | PopdToWorker | WorkerToPopd | PopdToParent;

const MAX_FIELD = 1024;

function str(x: unknown, max = MAX_FIELD): x is string {
  return typeof x === 'string' && x.length <= max;
}

/** Validates a message from authpop; anything else is null (and popd kills the sender). */
export function parseFromAuthpop(x: unknown): AuthpopToPopd | null {
  if (typeof x !== 'object' || x === null) return null;
  const m = x as Record<string, unknown>;
  switch (m.t) {
    case 'ready':
      return { t: 'ready' };
    case 'auth':
      return str(m.id, 64) && str(m.user, 255) && str(m.pass, 1024) ? { t: 'auth', id: m.id, user: m.user, pass: m.pass } : null;
    case 'closed':
      return str(m.id, 64) ? { t: 'closed', id: m.id } : null;
    case 'log':
      return parseLog(m);
    default:
      return null;
  }
}

export function parseFromWorker(x: unknown): WorkerToPopd | null {
  if (typeof x !== 'object' || x === null) return null;
  return parseLog(x as Record<string, unknown>);
}

function parseLog(m: Record<string, unknown>): LogRecord | null {
  return m.t === 'log' && isLevel(m.level) && str(m.msg, 4096) ? { t: 'log', level: m.level, msg: m.msg } : null;
}
