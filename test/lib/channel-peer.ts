/**
 * The child end of test/channel.test.ts: a process that uses @popd/channel on
 * the descriptor its parent gave it (3), in the mode named by argv[2].
 *   echo:      sends "ready", echoes every message; with a descriptor it answers on it
 *              ("tcp": a TCP socket, "pipe": a stream socket), "give" makes it pass one back.
 *   slow:      reads nothing until stdin says "go N", then checks N messages arrive in order.
 *   unref:     holds only an unref'ed channel (and must exit).
 *   inherited K L...: closeInherited([K]) with K and every L inherited; prints what it found.
 */
import fs from 'node:fs';
import net from 'node:net';
import { Channel, closeInherited, socketpair } from '@popd/channel';

const FD = 3;

function channel(): Channel {
  const ch = new Channel(FD);
  ch.on('error', (err) => {
    process.stderr.write(`peer: ${err.code}\n`);
    process.exit(1);
  });
  return ch;
}

/** Answers "answer:" and the upper-cased bytes of what arrives on the socket, then ends it. */
function answerOn(fd: number, prefix: string): void {
  const s = new net.Socket({ fd, readable: true, writable: true });
  s.once('data', (d: Buffer) => s.end(prefix + d.toString().toUpperCase()));
}

function echo(): void {
  const ch = channel();
  ch.on('message', (data, fd) => {
    const text = data.length < 16 ? data.toString() : '';
    if (fd !== null && text === 'tcp') answerOn(fd, 'answer:');
    else if (fd !== null && text === 'pipe') answerOn(fd, 'piped:');
    else if (fd !== null) fs.closeSync(fd);
    else if (text === 'give') {
      const [mine, theirs] = socketpair('stream');
      ch.send(Buffer.from('given'), theirs);
      fs.closeSync(theirs);
      new net.Socket({ fd: mine, readable: true, writable: true }).end('from the child');
    } else ch.send(data);
  });
  ch.send(Buffer.from('ready'));
}

function slow(): void {
  let line = '';
  process.stdin.on('data', (d: Buffer) => {
    line += d.toString();
    const m = /^go (\d+)\n/.exec(line);
    if (!m) return;
    process.stdin.destroy();
    const want = Number(m[1]);
    let got = 0;
    const ch = channel();
    ch.on('message', (data) => {
      if (got === want) {
        if (data.toString() === 'bye') ch.close();
        return;
      }
      if (data.readUInt32BE(0) !== got) {
        ch.send(Buffer.from(`out of order at ${got}: ${data.readUInt32BE(0)}`));
        got = want;
        return;
      }
      if (++got === want) ch.send(Buffer.from(`ok ${got}`));
    });
  });
}

function inherited(): void {
  const open = (fd: number): boolean => {
    try {
      fs.fstatSync(fd);
      return true;
    } catch {
      return false;
    }
  };
  const [kept, ...leaked] = process.argv.slice(3).map(Number);
  const closed = closeInherited([kept]);
  // Looked at now: Node opens descriptors of its own later (the thread pool's), at the lowest free numbers.
  const found = { closed, leaked: leaked.map(open), kept: open(kept) };
  // Node's own descriptors must still work (closed counts any it took): the thread pool, and stdout below.
  fs.promises.readFile(__filename).then(
    () => process.stdout.write(JSON.stringify(found)),
    (err: Error) => {
      process.stderr.write(`peer: ${err.message}\n`);
      process.exit(1);
    },
  );
}

const modes: Record<string, () => void> = { echo, slow, inherited, unref: () => channel().unref() };
const mode = modes[process.argv[2]];
if (!mode) {
  process.stderr.write(`peer: unknown mode ${process.argv[2]}\n`);
  process.exit(2);
}
mode();
