/** Byte-level edits shared by the wire form (CR before a bare LF) and byte-stuffing ("." before a line's "."). */

/** buf with byte inserted before each offset in at (ascending); buf itself when at is empty. */
export function insertBefore(buf: Buffer, at: readonly number[], byte: number): Buffer {
  if (at.length === 0) return buf;
  const out = Buffer.allocUnsafe(buf.length + at.length);
  let src = 0;
  let dst = 0;
  for (const i of at) {
    dst += buf.copy(out, dst, src, i);
    out[dst++] = byte;
    src = i;
  }
  buf.copy(out, dst, src);
  return out;
}
