/** Connecting the tests' POP3 client to popd: implicit TLS, or plain with STLS. */
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { Pop3Client } from './pop3';

export function connectTls(port: number, opts: tls.ConnectionOptions = {}): Promise<Pop3Client> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts }, () => {
      s.removeListener('error', reject);
      resolve(new Pop3Client(s));
    });
    s.once('error', reject);
  });
}

/** Implicit TLS from another loopback address (Linux routes all of 127/8 to the loopback: to popd 127.0.0.2 is another peer). */
export async function connectTlsFrom(localAddress: string, port: number): Promise<Pop3Client> {
  const raw = net.connect({ host: '127.0.0.1', port, localAddress });
  await once(raw, 'connect');
  return connectTls(port, { socket: raw });
}

export function connectPlain(port: number): Promise<Pop3Client> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.removeListener('error', reject);
      resolve(new Pop3Client(s));
    });
    s.once('error', reject);
  });
}

/** Sends STLS (and, in the same write, inject: bytes a man in the middle might add); on +OK, a client over TLS. */
export async function stls(c: Pop3Client, inject = ''): Promise<{ answer: string; tls: Pop3Client | null }> {
  c.sendRaw('STLS\r\n' + inject);
  const answer = await c.line();
  if (!answer.startsWith('+OK')) return { answer, tls: null };
  const plain = c.io as net.Socket;
  plain.removeAllListeners('readable');
  const s = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const t = tls.connect({ socket: plain, rejectUnauthorized: false }, () => resolve(t));
    t.once('error', reject);
  });
  return { answer, tls: new Pop3Client(s) };
}

/** USER and PASS; the answer to PASS (or to USER when that failed). */
export async function login(c: Pop3Client, user: string, pass: string): Promise<string> {
  const u = await c.cmd(`USER ${user}`);
  if (!u.startsWith('+OK')) return u;
  return c.cmd(`PASS ${pass}`);
}
