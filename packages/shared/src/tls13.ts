// identity: root, _pop3d
/** The one TLS context the server uses (RFC 8446 TLS 1.3 only): checked by popd, served by authpop. */
import tls from 'node:tls';

export function tls13Context(cert: Buffer | string, key: Buffer | string): tls.SecureContext {
  return tls.createSecureContext({ cert, key, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
}
