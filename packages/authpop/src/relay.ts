// identity: _pop3d
/**
 * After login: bytes flow both ways between the client (TLS) and the
 * worker (plain POP3 over a socketpair), with backpressure from pipe();
 * when either side ends, the other is ended, and a side that breaks takes
 * the other down.
 */
import net from 'node:net';
import { RELAY_LINGER_MS } from '@popd/shared/params';

export function relay(client: net.Socket, worker: net.Socket, pipelined: Buffer, onError: (err: Error) => void): void {
  const fail = (err: Error): void => {
    onError(err);
    client.destroy();
    worker.destroy();
  };
  client.on('error', fail);
  // A worker that closed while the client was still sending (a line flood it cut off) gives EPIPE
  // here: its last answer is already on the way to the client, so the client is ended, not reset.
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
  // The client may leave right after QUIT: the worker still gets every byte, then EOF.
  client.on('close', () => {
    worker.end();
    setTimeout(() => worker.destroy(), RELAY_LINGER_MS).unref();
  });
  if (pipelined.length > 0) worker.write(pipelined);
  client.pipe(worker);
  worker.pipe(client);
  client.resume();
}
