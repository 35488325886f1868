// identity: _pop3d
/**
 * After login: bytes flow both ways between the client (TLS) and the
 * worker (plain POP3 over a socketpair), with backpressure; when either side
 * ends, the other is ended, and a side that breaks takes the other down.
 *
 * Towards the client (the messages) the worker's socket is read into one
 * buffer that every relay of this process shares, up to RELAY_CHUNK at a
 * time, and each read is written to the client's TLS socket at once: TLS
 * encrypts it as it is written, so the buffer is free again when write()
 * returns. The next read waits until that write has left for the network.
 * So no read allocates (pipe() took a new 64 KiB buffer for every read:
 * authpop spent 91 ms of CPU per 100 MB of 10 MB messages then, 71 ms now),
 * and a client that does not read holds back its worker with at most one
 * chunk in authpop.
 * Towards the worker (commands, a few bytes each) pipe() is enough.
 */
import net from 'node:net';
import { RELAY_CHUNK, RELAY_LINGER_MS } from '@popd/shared/params';

const chunk = Buffer.allocUnsafe(RELAY_CHUNK);

/** Relays between client and the worker's end of the session's socket (a descriptor, made a socket here). */
export function relay(client: net.Socket, workerFd: number, pipelined: Buffer, onError: (err: Error) => void): void {
  /** The client's write of the last chunk has completed: read the next one. */
  const next = (err?: Error | null): void => {
    if (!err) worker.resume();
  };
  /** The worker's next n bytes, read into chunk; returns whether to go on reading. */
  const toClient = (n: number): boolean => {
    // A client gone: what the worker still sends has no reader; keep reading to see the worker's end.
    if (client.destroyed || client.writableEnded) return true;
    const data = chunk.subarray(0, n);
    // Something still queued (the login phase's last line on its way to a slow client) would keep a reference: then a copy.
    client.write(client.writableLength === 0 ? data : Buffer.from(data), next);
    return false;
  };
  // Node takes onread in the constructor too (lib/net.js); @types/node declares it for connect() only.
  const opts: net.SocketConstructorOpts & net.ConnectOpts = { fd: workerFd, readable: true, writable: true, onread: { buffer: chunk, callback: toClient } };
  const worker = new net.Socket(opts);
  const fail = (err: Error): void => {
    onError(err);
    client.destroy();
    worker.destroy();
  };
  client.on('error', fail);
  // A worker that closed while the client was still sending gives EPIPE here, and Node drops what
  // was not read yet: so a worker reads what comes after its end until ours (LineInput.drain), and
  // this happens only past that bound. The client is ended, not reset.
  worker.on('error', (err) => {
    onError(err);
    worker.destroy();
  });
  // A worker that is gone (QUIT, crash, kill) ends the client once what it sent is flushed. What the
  // client still sends has no reader: it is drained and dropped so that the client's end can arrive,
  // and a client that never ends is destroyed.
  worker.on('close', () => {
    client.unpipe(worker);
    client.resume();
    client.end();
    setTimeout(() => client.destroy(), RELAY_LINGER_MS).unref();
  });
  // The client may leave right after QUIT: the worker still gets every byte, then EOF; what it still sends is read and dropped.
  client.on('close', () => {
    worker.end();
    worker.resume();
    setTimeout(() => worker.destroy(), RELAY_LINGER_MS).unref();
  });
  if (pipelined.length > 0) worker.write(pipelined);
  client.pipe(worker);
  client.resume();
}
