// identity: the mail user, the recipient, the admin
/** Byte-level edits shared by the wire form (CR before a bare LF) and byte-stuffing ("." before a line's "."). */

/**
 * Inserts byte before each offset in at (ascending, relative to start) into
 * buf[start, end), in place: the bytes move right from the last edit back,
 * each at most once, and nothing moves when at is empty (a chunk that needs
 * no change costs no copy). buf must have at.length bytes of room after end.
 * Returns the new end.
 */
export function insertBefore(buf: Buffer, start: number, end: number, at: readonly number[], byte: number): number {
  let src = end;
  for (let k = at.length; k > 0; ) {
    const i = start + at[--k];
    // The bytes from i on move right by the k + 1 insertions up to and including this one.
    buf.copyWithin(i + k + 1, i, src);
    buf[i + k] = byte;
    src = i;
  }
  return end + at.length;
}
