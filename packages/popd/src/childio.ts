/**
 * What popd (root) takes from its children, which it does not trust: lines
 * of their stderr, each cut to a bounded length, and IPC messages, which
 * never carry a handle (a descriptor popd kept would leak, a server one it
 * would serve).
 */
import type { ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';

/** Longer than any real log line: what follows is dropped up to the line's end. */
export const MAX_CHILD_LINE = 4096;

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

/**
 * Messages from child, handed on only when they come without a handle: a
 * child that sends one is broken or hostile, and is killed after the
 * handle is closed.
 */
export function onChildMessage(child: ChildProcess, onBadHandle: () => void, onMessage: (raw: unknown) => void): void {
  child.on('message', (raw: unknown, handle: unknown) => {
    if (handle !== undefined && handle !== null) {
      const h = handle as { destroy?: () => void; close?: () => void };
      if (typeof h.destroy === 'function') h.destroy();
      else if (typeof h.close === 'function') h.close();
      onBadHandle();
      child.kill('SIGKILL');
      return;
    }
    onMessage(raw);
  });
}
