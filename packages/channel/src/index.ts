// identity: root, _pop3d, the mail user
/**
 * Message channels with descriptor passing, for popd and its children: what
 * Node's 'ipc' channel did, without Node parsing the peer's bytes in the
 * reader. The native half (src/channel.c) reads each message with recvmsg on
 * an AF_UNIX SOCK_SEQPACKET socket into a bounded buffer; a malformed message
 * becomes an 'error' event, never an exception.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';

/** A malformed message from the peer (its descriptors already closed), or an I/O error (then 'close' follows). */
export interface ChannelError extends Error {
  /**
   * ERR_CHANNEL_TRUNCATED: longer than MAX_MESSAGE; ERR_CHANNEL_CTRUNC: control data truncated;
   * ERR_CHANNEL_FDS: more than one descriptor; ERR_CHANNEL_CMSG: ancillary data other than SCM_RIGHTS;
   * ERR_CHANNEL_EMPTY: descriptors without bytes. Otherwise an errno name (EIO, ...) of a failed recvmsg or sendmsg.
   */
  code: string;
}

export interface ChannelEvents {
  /** The receiver owns fd and must close or use it. */
  message: [data: Buffer, fd: number | null];
  error: [err: ChannelError];
  close: [];
}

const EV_MESSAGE = 0;
const EV_ERROR = 1;

type NativeCallback = (kind: number, data: Buffer | string | undefined, fd: number) => void;

interface Native {
  MAX_MESSAGE: number;
  MAX_QUEUE: number;
  socketpair(seqpacket: boolean): [number, number];
  closeInherited(keep: readonly number[]): number;
  open(fd: number, cb: NativeCallback): object;
  send(handle: object, data: Buffer, fd: number): boolean;
  close(handle: object): void;
  ref(handle: object): void;
  unref(handle: object): void;
  pending(handle: object): number;
}

// Built by node-gyp at install (install.js); dist/ sits beside build/. A plain require: the
// path is fixed, so no loader package is needed.
const native = require(path.join(__dirname, '..', 'build', 'Release', 'channel.node')) as Native;

/** The largest message a Channel carries (bytes). 64 KiB. */
export const MAX_MESSAGE: number = native.MAX_MESSAGE;
/** Messages a Channel queues while the peer does not read; send() returns false beyond. */
export const MAX_QUEUE: number = native.MAX_QUEUE;
/** flushed() looks at the queue this often: a reading peer empties it within one look. */
const FLUSH_POLL_MS = 10;

/** AF_UNIX socketpair, both ends close-on-exec. 'seqpacket' for channels, 'stream' for session byte pipes. */
export function socketpair(kind: 'stream' | 'seqpacket'): [number, number] {
  return native.socketpair(kind === 'seqpacket');
}

/**
 * Closes every descriptor >= 3 not in keep that a parent or wrapper leaked to
 * us: one that lacks FD_CLOEXEC, or any open file or directory; returns how
 * many. Call it first thing: Node opens all of its own descriptors
 * close-on-exec, and none of them is a file or a directory as it starts. But
 * Node also marks 0 to 15 and the unbroken run after them close-on-exec
 * (libuv's uv_disable_stdio_inheritance): a leaked socket or pipe that low
 * stays open in this process, unrecognized, though it can no longer reach
 * our children.
 */
export function closeInherited(keep: readonly number[]): number {
  return native.closeInherited(keep);
}

export class Channel extends EventEmitter<ChannelEvents> {
  readonly #handle: object;
  #closed = false;

  /** Takes ownership of fd (an AF_UNIX SOCK_SEQPACKET socket); sets O_NONBLOCK; starts reading. */
  constructor(fd: number) {
    super();
    this.#handle = native.open(fd, (kind, data, rfd) => this.#event(kind, data, rfd));
  }

  /**
   * Queues one message, with at most one descriptor, which is dup'ed now (the
   * caller may close its own at once) and closed after it is sent. Returns
   * false when the channel is closed or its queue is full. Throws RangeError
   * when data is empty or longer than MAX_MESSAGE.
   */
  send(data: Buffer, fd?: number): boolean {
    if (data.length === 0 || data.length > MAX_MESSAGE) throw new RangeError(`channel message of ${data.length} bytes (1 to ${MAX_MESSAGE})`);
    if (fd !== undefined && !(Number.isInteger(fd) && fd >= 0)) throw new RangeError(`not a descriptor: ${fd}`);
    if (this.#closed) return false;
    return native.send(this.#handle, data, fd ?? -1);
  }

  /** Stops reading, closes the socket and every queued descriptor; 'close' follows on the next tick. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native.close(this.#handle);
    process.nextTick(() => this.emit('close'));
  }

  /** Messages queued because the peer was not reading, not yet sent. */
  get pending(): number {
    return this.#closed ? 0 : native.pending(this.#handle);
  }

  /**
   * Resolves once every message sent so far has left (or the channel closed):
   * before a process exits. It polls: only an exiting process waits for it,
   * and the queue is empty unless the peer stopped reading.
   */
  async flushed(): Promise<void> {
    while (this.pending > 0) await new Promise((r) => setTimeout(r, FLUSH_POLL_MS));
  }

  /** Like net.Socket: an unref'ed channel does not keep the process alive. */
  ref(): this {
    if (!this.#closed) native.ref(this.#handle);
    return this;
  }

  unref(): this {
    if (!this.#closed) native.unref(this.#handle);
    return this;
  }

  #event(kind: number, data: Buffer | string | undefined, fd: number): void {
    if (kind === EV_MESSAGE) {
      // Nobody to own it: a descriptor nobody listens for would leak.
      if (this.listenerCount('message') === 0) {
        if (fd >= 0) fs.closeSync(fd);
        return;
      }
      this.emit('message', data as Buffer, fd >= 0 ? fd : null);
    } else if (kind === EV_ERROR) {
      const code = data as string;
      this.emit('error', Object.assign(new Error(`channel: ${describe(code)}`), { code }));
    } else {
      this.#closed = true;
      this.emit('close');
    }
  }
}

function describe(code: string): string {
  switch (code) {
    case 'ERR_CHANNEL_TRUNCATED':
      return `message longer than ${MAX_MESSAGE} bytes`;
    case 'ERR_CHANNEL_CTRUNC':
      return 'control data truncated';
    case 'ERR_CHANNEL_FDS':
      return 'more than one descriptor';
    case 'ERR_CHANNEL_CMSG':
      return 'ancillary data other than SCM_RIGHTS';
    case 'ERR_CHANNEL_EMPTY':
      return 'descriptors without a message';
    default:
      return code;
  }
}
