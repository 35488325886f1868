// identity: root, _pop3d, the mail user
/**
 * Every message that crosses a process boundary, in one place (docs/architecture.md,
 * "IPC"). Transport: one SOCK_SEQPACKET channel per child (@popd/channel), one
 * JSON object per datagram, at most one descriptor beside it, and only from
 * popd to a child. popd treats what authpop and wrkrpop send as hostile:
 * parseFromAuthpop and parseFromWorker check the shape before anything is
 * used, and a child that sends anything else is killed.
 */
import { Level, isLevel } from './log';
import { MAX_CHILD_LINE } from './params';

/**
 * The protocol's version, in popd's first message to a child and in the
 * child's first answer: a child started from a newer or older install (an
 * upgrade replaces the files under a running popd) refuses to run.
 */
export const PROTOCOL = 3;

/** A log record from a chrooted child; popd writes it under the child's ident and pid. */
export interface LogRecord {
  t: 'log';
  level: Level;
  msg: string;
}

/** A child's first message, once it is configured (and confined). */
export interface Ready {
  t: 'ready';
  v: number;
}

// ---- popd -> authpop ----

/** First message: authpop reads cert and key as root, then chroots and drops. */
export interface AuthpopConfig {
  t: 'config';
  v: number;
  cert: string;
  key: string;
  /** Chroot directory and user to become; null in unprivileged mode. */
  drop: { root: string; uid: number; gid: number } | null;
  /** -t: settings of the command line travel here; constants come from params.ts in each process (one install: PROTOCOL). */
  loginTimeoutMs: number;
  verbosity: number;
}

/** A client socket (its descriptor beside the message), never read by popd. */
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

/**
 * Close this connection with -ERR [SYS/TEMP] unless it has logged in: popd
 * makes room under a cap for a new one (the connection no longer counts).
 */
export interface ConnEvict {
  t: 'evict';
  id: string;
}

/** SYS/PERM: right password, but this server cannot serve that user (unprivileged mode, another uid). */
export type VerdictCode = 'AUTH' | 'IN-USE' | 'SYS/TEMP' | 'SYS/PERM';

/** popd's answer to an AuthRequest. With ok, the session's socket (to the worker) is beside it. */
export type AuthVerdict =
  | { t: 'verdict'; id: string; ok: true; user: string }
  | { t: 'verdict'; id: string; ok: false; code: VerdictCode; text: string };

/** SIGHUP: a renewed certificate and key (PEM), checked by popd, for connections from now on. */
export interface TlsReload {
  t: 'tls';
  cert: string;
  key: string;
}

/** authpop: finish the connections that are logged in, close the others, exit. wrkrpop: see Retire. */
export interface Shutdown {
  t: 'shutdown';
}

// ---- authpop -> popd ----

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

/**
 * First message to a worker (a warm spare until now): chroot into root and
 * drop to uid:gid (drop: popd is root), or, unprivileged, check the uid.
 */
export interface WorkerConfine {
  t: 'confine';
  v: number;
  uid: number;
  gid: number;
  /** Absolute: the directory that holds every maildir this worker may serve. */
  root: string;
  drop: boolean;
  /** A session's idle limit. */
  idleTimeoutMs: number;
  verbosity: number;
}

/** One session; the worker's end of the session's socket is beside it. */
export interface WorkerSession {
  t: 'session';
  sid: string;
  user: string;
  /** The maildir relative to the worker's root ("" is the root itself); built from usertab only. */
  maildir: string;
}

/** No more sessions come: exit when the last one ends. */
export interface Retire {
  t: 'retire';
}

// ---- wrkrpop -> popd ----

/** A session has ended (the user may log in again). */
export interface SessionEnded {
  t: 'ended';
  sid: string;
}

export type PopdToAuthpop = AuthpopConfig | NewConnection | ConnEvict | AuthVerdict | TlsReload | Shutdown;
export type AuthpopToPopd = Ready | AuthRequest | ConnClosed | LogRecord;
export type PopdToWorker = WorkerConfine | WorkerSession | Retire;
export type WorkerToPopd = Ready | SessionEnded | LogRecord;

export function encode(m: PopdToAuthpop | AuthpopToPopd | PopdToWorker | WorkerToPopd): Buffer {
  return Buffer.from(JSON.stringify(m), 'utf8');
}

/** A datagram's JSON object, or null: bytes from a child are anything. */
export function decode(data: Buffer): Record<string, unknown> | null {
  try {
    const x: unknown = JSON.parse(data.toString('utf8'));
    return typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

const MAX_FIELD = 1024;
export const MAX_ID = 64;

export function str(x: unknown, max = MAX_FIELD): x is string {
  return typeof x === 'string' && x.length <= max;
}

/** A whole number in [min, max]. */
export function int(x: unknown, min: number, max: number): x is number {
  return Number.isSafeInteger(x) && (x as number) >= min && (x as number) <= max;
}

function parseReady(m: Record<string, unknown>): Ready | null {
  return int(m.v, 0, 1_000_000) ? { t: 'ready', v: m.v } : null;
}

/** Validates a message from authpop; anything else is null (and popd kills the sender). */
export function parseFromAuthpop(m: Record<string, unknown>): AuthpopToPopd | null {
  switch (m.t) {
    case 'ready':
      return parseReady(m);
    case 'auth':
      return str(m.id, MAX_ID) && str(m.user, 255) && str(m.pass, 1024) ? { t: 'auth', id: m.id, user: m.user, pass: m.pass } : null;
    case 'closed':
      return str(m.id, MAX_ID) ? { t: 'closed', id: m.id } : null;
    case 'log':
      return parseLog(m);
    default:
      return null;
  }
}

/** Validates a message from a worker; anything else is null (and popd kills the sender). */
export function parseFromWorker(m: Record<string, unknown>): WorkerToPopd | null {
  switch (m.t) {
    case 'ready':
      return parseReady(m);
    case 'ended':
      return str(m.sid, MAX_ID) ? { t: 'ended', sid: m.sid } : null;
    case 'log':
      return parseLog(m);
    default:
      return null;
  }
}

function parseLog(m: Record<string, unknown>): LogRecord | null {
  return isLevel(m.level) && str(m.msg, MAX_CHILD_LINE) ? { t: 'log', level: m.level, msg: m.msg } : null;
}
