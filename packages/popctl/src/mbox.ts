// identity: the admin
/**
 * Reading an mbox spool. The rule (documented in popctl(8)):
 *  - a message starts at a line beginning "From " at the start of the file
 *    or right after an empty line; that From_ line is not part of the message;
 *  - the empty line before the next From_ line (or at the end of the file)
 *    is the mbox's separator, not message text, and is dropped;
 *  - mboxrd unquoting: a line matching ^>+From loses one ">".
 * For mboxrd files this is exact; mboxo files quote only "From " lines, so a
 * body line that was ">From " in the original comes back as "From ".
 */

/** Splits a byte stream into lines, each keeping its "\n". */
export async function* lines(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let rest: Buffer = Buffer.alloc(0);
  for await (const chunk of chunks) {
    let buf = rest.length ? Buffer.concat([rest, chunk]) : chunk;
    let nl: number;
    while ((nl = buf.indexOf(0x0a)) !== -1) {
      yield buf.subarray(0, nl + 1);
      buf = buf.subarray(nl + 1);
    }
    rest = Buffer.from(buf); // copy: do not pin the whole chunk
  }
  if (rest.length) yield rest;
}

const FROM = Buffer.from('From ');

function isEmptyLine(l: Buffer): boolean {
  return (l.length === 1 && l[0] === 0x0a) || (l.length === 2 && l[0] === 0x0d && l[1] === 0x0a);
}

/** A line of the form ">+From " loses its first ">". */
export function unquote(l: Buffer): Buffer {
  if (l[0] !== 0x3e) return l;
  let i = 1;
  while (l[i] === 0x3e) i++;
  return l.subarray(i, i + FROM.length).equals(FROM) ? l.subarray(1) : l;
}

export interface MboxMessage {
  data: Buffer;
  /** Source bytes consumed so far (for progress). */
  position: number;
}

export class NotMbox extends Error {}

/** The messages of an mbox, byte-exact after unquoting. */
export async function* mboxMessages(chunks: AsyncIterable<Buffer>): AsyncGenerator<MboxMessage> {
  let current: Buffer[] | null = null;
  let prevEmpty = true;
  let position = 0;
  const finish = (): Buffer => {
    const msg = current!;
    if (msg.length && isEmptyLine(msg[msg.length - 1])) msg.pop();
    return Buffer.concat(msg);
  };
  for await (const l of lines(chunks)) {
    const isFrom = prevEmpty && l.subarray(0, FROM.length).equals(FROM);
    if (isFrom) {
      if (current) yield { data: finish(), position };
      current = [];
    } else if (!current) {
      throw new NotMbox('not an mbox: the first line is not a "From " line');
    } else {
      current.push(unquote(l));
    }
    position += l.length;
    prevEmpty = isEmptyLine(l);
  }
  if (current) yield { data: finish(), position };
}
