// identity: _pop3d, the mail user
/**
 * A child's end of its channel to popd (authpop and wrkrpop; they run as
 * root until their first message from popd says whom to become). popd
 * hands the channel over as descriptor 3 (docs/architecture.md, "IPC").
 */
import fs from 'node:fs';
import { Channel, closeInherited } from '@popd/channel';
import { AuthpopToPopd, decode, encode, WorkerToPopd } from './ipc';
import { channelSink, Logger, stderrSink } from './log';

/** Where popd puts the channel in a child's descriptor table. */
export const CHANNEL_FD = 3;

export class ToPopd {
  private readonly channel: Channel;
  readonly log: Logger;

  constructor(ident: string) {
    // Nothing of popd's but the channel: a thread of popd's starting V8 opens /proc/self/maps
    // without close-on-exec, and a child started at that moment inherits it.
    closeInherited([CHANNEL_FD]);
    this.channel = new Channel(CHANNEL_FD);
    this.log = new Logger(channelSink((level, msg) => this.send({ t: 'log', level, msg }), stderrSink(ident)));
  }

  send(m: AuthpopToPopd | WorkerToPopd): boolean {
    return this.channel.send(encode(m));
  }

  /** popd's messages, decoded (popd is trusted, but its shape is still checked by the caller); a descriptor beside one is the caller's. */
  onMessage(fn: (m: Record<string, unknown>, fd: number | null) => void): void {
    this.channel.on('message', (data: Buffer, fd: number | null) => {
      const m = decode(data);
      if (m !== null) fn(m, fd);
      else if (fd !== null) fs.closeSync(fd);
    });
  }

  /** popd is gone (or closed the channel). */
  onClose(fn: () => void): void {
    this.channel.on('close', fn);
  }

  /** Resolves once every message sent so far has left (bounded by the caller: popd may not be reading). */
  flushed(): Promise<void> {
    return this.channel.flushed();
  }
}
