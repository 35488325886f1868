/**
 * @popd/channel over real socketpairs between real processes: a Node child
 * (test/lib/channel-peer.ts) that uses the package, and a python3 peer that
 * sends what a compromised child could (several descriptors, oversized
 * messages, foreign control data).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawn, spawnSync, StdioOptions } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Channel, ChannelError, MAX_MESSAGE, MAX_QUEUE, socketpair } from '@popd/channel';

const PEER = path.join(__dirname, '..', 'lib', 'channel-peer.js');
const onLinux = process.platform === 'linux';
const hasPython = spawnSync('python3', ['-c', 'import socket'], { stdio: 'ignore' }).status === 0;
const fdCount = (): number => fs.readdirSync('/proc/self/fd').length;
/** Every test waits on a peer: a hang becomes a failure. */
const BOUNDED = { timeout: 60_000 };

interface Peer {
  child: ChildProcess;
  ch: Channel;
  exited: Promise<number | null>;
}

/** Starts argv with the other end of a fresh seqpacket pair as its descriptor 3 (plus extra stdio), and our end as a Channel. */
function startPeer(argv: string[], extra: StdioOptions = [], stdin: 'ignore' | 'pipe' = 'ignore'): Peer {
  const [mine, theirs] = socketpair('seqpacket');
  const child = spawn(argv[0], argv.slice(1), { stdio: [stdin, 'pipe', 'inherit', theirs, ...(extra as unknown[])] as StdioOptions });
  fs.closeSync(theirs);
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, ch: new Channel(mine), exited };
}

const nodePeer = (mode: string, stdin: 'ignore' | 'pipe' = 'ignore'): Peer => startPeer([process.execPath, PEER, mode], [], stdin);

/** The next message, failing on 'error' or 'close' before it. */
function nextMessage(ch: Channel): Promise<[Buffer, number | null]> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      ch.off('message', onMessage).off('error', reject).off('close', onClose);
    };
    const onMessage = (data: Buffer, fd: number | null): void => {
      cleanup();
      resolve([data, fd]);
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error('channel closed'));
    };
    ch.on('message', onMessage).on('error', reject).on('close', onClose);
  });
}

function readAll(s: net.Socket): Promise<string> {
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString()));
  return once(s, 'end').then(() => text);
}

/** Message i of a sequence: its index, then bytes derived from it; sizes from 1 to exactly MAX_MESSAGE. */
function numbered(i: number): Buffer {
  const size = i % 50 === 0 ? MAX_MESSAGE : i % 7 === 0 ? 1 : 4 + ((i * 7919) % 3000);
  const b = Buffer.alloc(size, i & 0xff);
  if (size >= 4) b.writeUInt32BE(i, 0);
  return b;
}

test('messages round-trip through a child in order with their boundaries, up to exactly MAX_MESSAGE', BOUNDED, async () => {
  const { ch, exited } = nodePeer('echo');
  assert.equal(MAX_MESSAGE, 64 * 1024);
  assert.equal((await nextMessage(ch))[0].toString(), 'ready');

  const N = 1000;
  const got: Buffer[] = [];
  const all = new Promise<void>((resolve) => {
    ch.on('message', (data, fd) => {
      assert.equal(fd, null);
      if (got.push(data) === N) resolve();
    });
  });
  for (let i = 0; i < N; i++) assert.equal(ch.send(numbered(i)), true, `send ${i}`);
  await all;
  for (let i = 0; i < N; i++) assert.ok(got[i].equals(numbered(i)), `message ${i} came back changed (${got[i].length} bytes)`);

  assert.throws(() => ch.send(Buffer.alloc(MAX_MESSAGE + 1)), RangeError);
  assert.throws(() => ch.send(Buffer.alloc(0)), RangeError);
  ch.close();
  assert.equal(ch.send(Buffer.from('late')), false);
  await once(ch, 'close');
  assert.equal(await exited, 0);
});

test('descriptors pass both ways: a TCP connection and stream socketpair ends, the sender closing its copy at once', BOUNDED, async () => {
  const { ch, exited } = nodePeer('echo');
  await nextMessage(ch);

  // TCP: popd's case, an accepted client handed to a child that answers it.
  const server = net.createServer({ pauseOnConnect: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [accepted] = (await once(server, 'connection')) as [net.Socket];
  // Node does not type a socket's descriptor; _handle.fd is where it keeps it on Unix.
  const tcpFd = (accepted as unknown as { _handle: { fd: number } })._handle.fd;
  assert.equal(ch.send(Buffer.from('tcp'), tcpFd), true);
  accepted.destroy();
  server.close();
  client.write('question');
  assert.equal(await readAll(client), 'answer:QUESTION');

  // A stream socketpair end, parent to child.
  const [mine, theirs] = socketpair('stream');
  assert.equal(ch.send(Buffer.from('pipe'), theirs), true);
  fs.closeSync(theirs);
  const pipe = new net.Socket({ fd: mine, readable: true, writable: true });
  pipe.write('both ways');
  assert.equal(await readAll(pipe), 'piped:BOTH WAYS');

  // And child to parent.
  assert.equal(ch.send(Buffer.from('give')), true);
  const [data, fd] = await nextMessage(ch);
  assert.equal(data.toString(), 'given');
  assert.ok(fd !== null && fd > 2);
  assert.equal(await readAll(new net.Socket({ fd, readable: true, writable: true })), 'from the child');

  assert.throws(() => ch.send(Buffer.from('x'), -1), RangeError);
  assert.throws(() => ch.send(Buffer.from('x'), 1 << 20), { code: 'EBADF' });
  ch.close();
  assert.equal(await exited, 0);
});

// The peer sends one thing per step and waits for our "ack", so each step's event is seen on its own.
const HOSTILE = String.raw`
import array, os, socket, sys
MAX = int(sys.argv[1])
s = socket.socket(fileno=3)
def fds(n): return [os.open('/dev/null', os.O_RDONLY) for _ in range(n)]
def send(data, n=0, extra=[]):
    anc = ([(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds(n)).tobytes())] if n else []) + extra
    s.sendmsg([data], anc)
    assert s.recv(16) == b'ack'
send(b'two', 2)
send(b'x' * (MAX + 1), 1)
send(b'many', 20)
send(b'', 1)
if sys.platform.startswith('linux'):
    # Our end (inherited as 4) asks for credentials: the kernel then attaches SCM_CREDENTIALS.
    ours = socket.socket(fileno=4)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    send(b'creds', 1)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
    ours.close()
send(b'normal', 1)
send(b'plain')
s.close()
`;

test('a hostile peer: several descriptors, oversized messages, foreign control data give errors, leak nothing, and the channel goes on', { ...BOUNDED, skip: !hasPython && 'python3 is not installed' }, async () => {
  const [mine, theirs] = socketpair('seqpacket');
  const child = spawn('python3', ['-c', HOSTILE, String(MAX_MESSAGE)], { stdio: ['ignore', 'inherit', 'inherit', theirs, mine] });
  fs.closeSync(theirs);
  const exited = once(child, 'exit');
  const ch = new Channel(mine);
  // Each event with how many more descriptors this process holds than before (Linux), checked at the end
  // so that a failure cannot stall the peer waiting for its ack.
  const base = onLinux ? fdCount() : 0;
  const held = (): string => (onLinux ? ` +${fdCount() - base}` : '');
  const events: string[] = [];
  // Not events.once: it would take the first 'error' as a failure.
  const closed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
  ch.on('error', (err: ChannelError) => {
    events.push(err.code + held());
    ch.send(Buffer.from('ack'));
  });
  ch.on('message', (data, fd) => {
    events.push(`${data.toString()}:${fd === null ? 'none' : 'fd'}${held()}`);
    if (fd !== null) fs.closeSync(fd);
    ch.send(Buffer.from('ack'));
  });
  await closed;
  const plus = (n: number): string => (onLinux ? ` +${n}` : '');
  assert.deepEqual(events, [
    'ERR_CHANNEL_FDS' + plus(0),
    'ERR_CHANNEL_TRUNCATED' + plus(0),
    'ERR_CHANNEL_CTRUNC' + plus(0),
    'ERR_CHANNEL_EMPTY' + plus(0),
    ...(onLinux ? ['ERR_CHANNEL_CMSG' + plus(0)] : []),
    'normal:fd' + plus(1),
    'plain:none' + plus(0),
  ]);
  assert.deepEqual(await exited, [0, null]);
  if (onLinux) assert.equal(fdCount(), base - 1, 'the channel kept its socket after close');
});

test('backpressure: messages to a peer that does not read queue up to MAX_QUEUE, then arrive in order', BOUNDED, async () => {
  const { child, ch, exited } = nodePeer('slow', 'pipe');
  let accepted = 0;
  // The kernel takes some, the queue the next MAX_QUEUE; the bound only stops a broken queue.
  while (accepted < MAX_QUEUE * 20) {
    const b = Buffer.alloc(64, accepted & 0xff);
    b.writeUInt32BE(accepted, 0);
    if (!ch.send(b)) break;
    accepted++;
  }
  assert.ok(accepted > MAX_QUEUE && accepted < MAX_QUEUE * 20, `send() accepted ${accepted} messages`);
  child.stdin!.end(`go ${accepted}\n`);
  assert.equal((await nextMessage(ch))[0].toString(), `ok ${accepted}`);
  assert.equal(ch.send(Buffer.from('bye')), true, 'the queue did not drain');
  await once(ch, 'close');
  assert.equal(await exited, 0);
});

/** Our descriptors (>= 3) without close-on-exec, which every child inherits: what whoever started the tests leaked to us. */
function leakedToUs(): number[] {
  return fs
    .readdirSync('/proc/self/fd')
    .map(Number)
    .filter((fd) => {
      if (fd < 3) return false;
      try {
        // fdinfo's flags (octal) include O_CLOEXEC, 02000000, for a close-on-exec descriptor.
        return (parseInt(/^flags:\s*(\d+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1] ?? '0', 8) & 0o2000000) === 0;
      } catch {
        return false; // readdir's own descriptor, closed by now
      }
    });
}

test('closeInherited closes what the parent leaked, keeps what it is told to and what Node opened', BOUNDED, async () => {
  // Node marks descriptors 0 to 15 (and any run right after them) close-on-exec when it starts
  // (libuv's uv_disable_stdio_inheritance): a leak that low is told apart from Node's own only
  // when it is a file or a directory (a file at 5, a directory at 6). A device leaked past a
  // gap, at 40, lacks close-on-exec; the kept one, at 41, is a device too.
  const [FILE, DIR, LEAKED, KEPT] = [5, 6, 40, 41];
  const file = fs.openSync(__filename, 'r');
  const dir = fs.openSync(__dirname, 'r');
  const leaked = fs.openSync('/dev/null', 'r');
  const kept = fs.openSync('/dev/null', 'r');
  const stdio: StdioOptions = ['ignore', 'pipe', 'inherit', 'ignore', 'ignore', file, dir, ...Array<'ignore'>(LEAKED - 7).fill('ignore'), leaked, kept];
  const outside = onLinux ? leakedToUs().filter((fd) => fd >= stdio.length).length : 0;
  const child = spawn(process.execPath, [PEER, 'inherited', String(KEPT), String(FILE), String(DIR), String(LEAKED)], { stdio });
  for (const fd of [file, dir, leaked, kept]) fs.closeSync(fd);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  const report = JSON.parse(out) as { closed: number; leaked: boolean[]; kept: boolean };
  assert.deepEqual({ leaked: report.leaked, kept: report.kept }, { leaked: [false, false, false], kept: true });
  if (onLinux) assert.equal(report.closed, 3 + outside, `closed ${report.closed}; ${outside} leaked to the test itself`);
  else assert.ok(report.closed >= 3);
});

// A broken unref() leaves the child running: the timeout turns that into a failure.
test('a process holding only an unref\'ed channel exits', BOUNDED, async () => {
  const { ch, exited } = nodePeer('unref');
  const closed = once(ch, 'close');
  assert.equal(await exited, 0);
  await closed;
});
