// identity: _pop3d
/**
 * The AUTHORIZATION state of one connection, as a pure state machine: a
 * line in, what to do out; popd's verdict in, what to answer and when. The
 * caller does the I/O, the timers and the question to popd.
 */
import type { VerdictCode } from '@popd/shared/ipc';
import { authorizationCapabilities } from '@popd/shared/capa';
import { MAX_FAILURES } from '@popd/shared/params';

export type Step =
  | { t: 'reply'; lines: string[] }
  /** Answer +OK, discard every byte buffered so far, start TLS. */
  | { t: 'stls' }
  /** Ask popd; no further line is read until verdict() is called. */
  | { t: 'auth'; user: string; pass: string }
  | { t: 'quit' };

export interface SessionState {
  /** Plain POP3 that may upgrade with STLS. */
  readonly plain: boolean;
  tls: boolean;
  user: string | null;
  /** AUTH PLAIN sent "+ " and waits for the client's response line. */
  saslPending: boolean;
  failures: number;
}

export function newSession(mode: 'tls' | 'stls'): SessionState {
  return { plain: mode === 'stls', tls: mode === 'tls', user: null, saslPending: false, failures: 0 };
}

export const GREETING = '+OK POP3 server ready';
export const AUTH_FAILED = '-ERR [AUTH] invalid user name or password';

export function capabilities(s: SessionState): string[] {
  return ['+OK capability list follows', ...authorizationCapabilities(s.tls, s.plain), '.'];
}

const reply = (...lines: string[]): Step => ({ t: 'reply', lines });
const NOT_YET_TLS = reply('-ERR [AUTH] credentials are refused before STLS');

/** A line the reader refused (control bytes, too long): answered, and it ends a pending AUTH exchange like any line. */
export function refusedLine(s: SessionState, answer: string): Step {
  s.saslPending = false;
  return reply(answer);
}

export type VerdictStep =
  /** Answer now and read on (the password was right: not a failure). */
  | { t: 'answer'; line: string }
  /** Answer after the failure delay; then close when close is set, else read on. */
  | { t: 'delay'; line: string; close: boolean };

/**
 * popd's refusal of a login. IN-USE and SYS/PERM come after a right
 * password: answered at once, not counted. A wrong password and a busy
 * server's refusal count and wait alike: no client retries password checks
 * without pause or end; the MAX_FAILURES-th closes the connection.
 */
export function refusal(s: SessionState, code: VerdictCode, text: string): VerdictStep {
  const line = code === 'AUTH' ? AUTH_FAILED : `-ERR [${code}] ${text}`;
  if (code === 'IN-USE' || code === 'SYS/PERM') return { t: 'answer', line };
  s.failures++;
  return { t: 'delay', line, close: s.failures >= MAX_FAILURES };
}

/** Handles one client line (UTF-8 decoded, without CRLF; Pop3Lines has already answered control bytes, NUL among them). */
export function step(s: SessionState, line: string): Step {
  // Any line ends a pending AUTH exchange, a bad one too: the next line is a command again.
  const sasl = s.saslPending;
  s.saslPending = false;
  if (sasl) return saslResponse(line);
  const sp = line.indexOf(' ');
  const cmd = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
  const arg = sp < 0 ? '' : line.slice(sp + 1);
  switch (cmd) {
    case 'CAPA':
      return reply(...capabilities(s));
    case 'QUIT':
      return { t: 'quit' };
    case 'STLS':
      if (!s.plain) return reply('-ERR STLS is not offered here');
      if (s.tls) return reply('-ERR TLS is already active');
      s.tls = true;
      s.user = null;
      return { t: 'stls' };
    case 'USER':
      if (!s.tls) return NOT_YET_TLS;
      if (arg === '' || arg.includes(' ')) return reply('-ERR usage: USER name');
      s.user = arg;
      return reply('+OK send PASS');
    case 'PASS': {
      if (!s.tls) return NOT_YET_TLS;
      const user = s.user;
      s.user = null;
      if (user === null) return reply('-ERR USER first');
      return { t: 'auth', user, pass: arg };
    }
    case 'AUTH': {
      if (!s.tls) return NOT_YET_TLS;
      s.user = null;
      const [mech, initial, extra] = arg.split(' ');
      if (mech === undefined || mech === '') return reply('-ERR usage: AUTH mechanism [initial-response]');
      if (mech.toUpperCase() !== 'PLAIN' || extra !== undefined) return reply('-ERR unsupported SASL mechanism');
      if (initial === undefined) {
        s.saslPending = true;
        return reply('+ ');
      }
      return saslResponse(initial);
    }
    default:
      return reply('-ERR unknown command or not allowed before login');
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** RFC 4616 PLAIN: [authzid] NUL authcid NUL passwd; "=" is an empty response, "*" cancels (RFC 5034). */
function saslResponse(resp: string): Step {
  if (resp === '*') return reply('-ERR AUTH cancelled');
  if (resp !== '=' && !BASE64.test(resp)) return reply('-ERR invalid base64');
  const parts = resp === '=' ? [''] : Buffer.from(resp, 'base64').toString('utf8').split('\0');
  if (parts.length !== 3) return reply('-ERR malformed PLAIN response');
  const [authz, user, pass] = parts;
  // Logging in as someone else (a proxy authorization) is not supported.
  if (user === '' || (authz !== '' && authz !== user)) return reply(AUTH_FAILED);
  return { t: 'auth', user, pass };
}
