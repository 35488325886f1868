// identity: the mail user
/**
 * Parses a TRANSACTION-state command line into a Command. Pure: the
 * mailbox decides whether a well-formed message number exists.
 */

export type Command =
  | { kind: 'STAT' | 'RSET' | 'NOOP' | 'QUIT' | 'CAPA' }
  | { kind: 'LIST' | 'UIDL'; msg: number | null }
  | { kind: 'RETR' | 'DELE'; msg: number }
  | { kind: 'TOP'; msg: number; lines: number }
  /** Not a command this state accepts: the answer is "-ERR " + text. */
  | { kind: 'bad'; text: string };

/** AUTHORIZATION-state commands: known, but not here (RFC 1939 wants -ERR). */
const OTHER_STATE = new Set(['USER', 'PASS', 'APOP', 'AUTH', 'STLS']);

/**
 * Strict decimal message number: digits only, no sign, no leading zero,
 * at most 10 digits (more could only be out of range anyway).
 */
const MSG_NUMBER = /^[1-9][0-9]{0,9}$/;
/** TOP's line count: any non-negative decimal; a huge one means "the whole message". */
const LINE_COUNT = /^(?:0|[1-9][0-9]*)$/;

const bad = (text: string): Command => ({ kind: 'bad', text });

export function parseMsgNumber(s: string): number | null {
  return MSG_NUMBER.test(s) ? Number(s) : null;
}

export function parseCommand(line: string): Command {
  const words = line.split(' ');
  const verb = words[0].toUpperCase();
  const args = words.slice(1);
  // Empty words mean doubled, leading or trailing spaces.
  if (words.some((w) => w === '')) return bad('syntax error: one space between words');
  const arity = (min: number, max: number, usage: string): string | null =>
    args.length < min || args.length > max ? `syntax: ${usage}` : null;
  const msgArg = (i: number): number | string => parseMsgNumber(args[i]) ?? `invalid message number`;

  switch (verb) {
    case 'STAT':
    case 'RSET':
    case 'NOOP':
    case 'QUIT':
    case 'CAPA': {
      const e = arity(0, 0, verb);
      return e ? bad(e) : { kind: verb };
    }
    case 'LIST':
    case 'UIDL': {
      const e = arity(0, 1, `${verb} [msg]`);
      if (e) return bad(e);
      if (args.length === 0) return { kind: verb, msg: null };
      const n = msgArg(0);
      return typeof n === 'string' ? bad(n) : { kind: verb, msg: n };
    }
    case 'RETR':
    case 'DELE': {
      const e = arity(1, 1, `${verb} msg`);
      if (e) return bad(e);
      const n = msgArg(0);
      return typeof n === 'string' ? bad(n) : { kind: verb, msg: n };
    }
    case 'TOP': {
      const e = arity(2, 2, 'TOP msg lines');
      if (e) return bad(e);
      const n = msgArg(0);
      if (typeof n === 'string') return bad(n);
      if (!LINE_COUNT.test(args[1])) return bad('invalid line count');
      // Number() of a very long digit string is a huge float or Infinity: both mean "all lines".
      return { kind: 'TOP', msg: n, lines: Number(args[1]) };
    }
    default:
      return bad(OTHER_STATE.has(verb) ? 'command not valid in TRANSACTION state' : 'unknown command');
  }
}
