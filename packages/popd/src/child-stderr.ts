// identity: root
/**
 * Lines of a child's stderr as popd (root) takes them: each cut to a
 * bounded length (a child that crashes prints there; a hostile one may
 * print anything).
 */
import type { Readable } from 'node:stream';
import { MAX_CHILD_LINE } from '@popd/shared/params';

/** Calls onLine for each line of input, cut to MAX_CHILD_LINE characters; a child writing without newlines costs popd nothing. */
export function childLines(input: Readable, onLine: (line: string) => void): void {
  let head = '';
  let cut = false;
  const take = (piece: string): void => {
    if (cut) return;
    head += piece;
    if (head.length > MAX_CHILD_LINE) {
      onLine(`${head.slice(0, MAX_CHILD_LINE)} [line cut]`);
      head = '';
      cut = true;
    }
  };
  input.setEncoding('utf8');
  input.on('data', (chunk: string) => {
    let start = 0;
    for (let nl = chunk.indexOf('\n'); nl !== -1; start = nl + 1, nl = chunk.indexOf('\n', start)) {
      take(chunk.slice(start, nl));
      if (!cut) onLine(head);
      head = '';
      cut = false;
    }
    take(chunk.slice(start));
  });
  input.on('end', () => {
    if (!cut && head !== '') onLine(head);
  });
}
