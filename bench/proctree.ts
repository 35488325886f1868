/**
 * CPU time and memory of a server's whole process tree, read from /proc
 * (Linux): the root and every descendant, found by walking the ppid field of
 * every /proc/PID/stat. Nothing here knows which processes a server runs.
 * (test/lib/proc.ts tree() also reads every process's fds and status, too
 * slow to sample a tree of a thousand processes.)
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/** USER_HZ, the unit of the times in /proc/PID/stat. */
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

interface Stat {
  pid: number;
  ppid: number;
  /** utime + stime + cutime + cstime, in ticks. */
  ticks: number;
}

function readStat(pid: string): Stat | null {
  let s: string;
  try {
    s = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null; // exited meanwhile
  }
  // The command name (field 2) may hold spaces and parentheses: split after its last ")".
  // f[0] is field 3 (state), f[1] field 4 (ppid), f[11..14] fields 14..17 (utime stime cutime cstime).
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return { pid: Number(pid), ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
}

/** The root and its descendants as they are now (zombies included: they still hold their times). */
function tree(root: number): Stat[] {
  const all = fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(readStat)
    .filter((s): s is Stat => s !== null);
  const out = all.filter((s) => s.pid === root);
  for (let i = 0; i < out.length; i++) out.push(...all.filter((s) => s.ppid === out[i].pid));
  return out;
}

export const treePids = (root: number): number[] => tree(root).map((s) => s.pid);

/**
 * CPU seconds the tree has used so far: for every live process its own
 * utime+stime plus cutime+cstime, which the kernel adds up for the children
 * it has waited for (recursively, as each child added its own). A process
 * that ran and exited between two samples is thus counted in its parent. Take
 * the difference of two samples. Blind spots: a process reparented away from
 * the tree (a daemon forking off) and one reaped between the reads of its
 * parent and of itself (counted twice or not at all: one process's time).
 */
export const treeCpuSeconds = (root: number): number => tree(root).reduce((sum, s) => sum + s.ticks, 0) / CLK_TCK;

/** Sum of Pss (proportional set size: shared pages split among their users) over the tree, in KiB. */
export function treePssKiB(root: number): number {
  let kib = 0;
  for (const pid of treePids(root)) {
    try {
      kib += Number(/^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'))?.[1] ?? 0);
    } catch {
      // exited meanwhile
    }
  }
  return kib;
}
