/** CAPA in TRANSACTION state (RFC 2449): what this engine does. */
export const CAPABILITIES: readonly string[] = ['TOP', 'UIDL', 'PIPELINING', 'RESP-CODES', 'IMPLEMENTATION popd'];
