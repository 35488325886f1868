// identity: root until its config, then _pop3d
/**
 * authpop's root phase (docs/architecture.md, "authpop"): popd's first
 * message names the certificate and key, which are read while this process
 * is still root; then it chroots to the empty directory, drops to the
 * unprivileged user and verifies the drop. Nothing from the network has
 * been read by then.
 */
import fs from 'node:fs';
import tls from 'node:tls';
import { AuthpopConfig, PROTOCOL } from '@popd/shared/ipc';
import { dropPrivileges } from '@popd/shared/privdrop';
import { tls13Context } from '@popd/shared/tls13';

/** The TLS context to serve with, once the process is confined; throws with the reason otherwise. */
export function configure(c: AuthpopConfig): tls.SecureContext {
  if (c.v !== PROTOCOL) throw new Error(`popd speaks protocol ${c.v}, this authpop ${PROTOCOL}: restart popd after an upgrade`);
  const ctx = tls13Context(fs.readFileSync(c.cert), fs.readFileSync(c.key));
  if (c.drop !== null) dropPrivileges(c.drop);
  return ctx;
}
