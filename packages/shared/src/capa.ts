// identity: _pop3d, the mail user
/**
 * CAPA (RFC 2449) in both states, from one list: what the mailbox engine
 * does is offered in TRANSACTION and announced before login too, where the
 * ways to log in are added.
 */

/** What the mailbox engine does (TRANSACTION state). */
const MAILBOX_CAPABILITIES: readonly string[] = ['TOP', 'UIDL', 'PIPELINING', 'RESP-CODES'];
const IMPLEMENTATION = 'IMPLEMENTATION popd';

/** TRANSACTION state. */
export const TRANSACTION_CAPABILITIES: readonly string[] = [...MAILBOX_CAPABILITIES, IMPLEMENTATION];

/**
 * AUTHORIZATION state. Before TLS no way to log in is offered: RFC 2595
 * clients ask again after STLS.
 */
export function authorizationCapabilities(tls: boolean, stlsOffered: boolean): string[] {
  return [...(tls ? ['USER', 'SASL PLAIN'] : []), ...MAILBOX_CAPABILITIES, 'AUTH-RESP-CODE', ...(stlsOffered && !tls ? ['STLS'] : []), IMPLEMENTATION];
}
