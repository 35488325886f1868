// identity: root, _pop3d
/** An address and port as logs and messages write them: 192.0.2.1:995, [2001:db8::1]:995. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
