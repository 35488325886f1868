/** Processes and sockets as /proc shows them, for tests that check what each process holds. */
import fs from 'node:fs';

export const exists = (pid: number): boolean => fs.existsSync(`/proc/${pid}`);

export interface ProcInfo {
  pid: number;
  ppid: number;
  uids: number[];
  gids: number[];
  groups: number[];
  root: string;
  fds: string[];
  cmdline: string;
}

export function proc(pid: number): ProcInfo {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number[] =>
    (new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '')
      .split(/\s+/)
      .filter((x) => x !== '')
      .map(Number);
  const fds = fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return '';
    }
  });
  return {
    pid,
    ppid: field('PPid')[0],
    uids: field('Uid'),
    gids: field('Gid'),
    groups: field('Groups'),
    root: fs.readlinkSync(`/proc/${pid}/root`),
    fds,
    cmdline: fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '),
  };
}

/** popd and all its descendants. */
export function tree(rootPid: number): ProcInfo[] {
  const all = fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .flatMap((d) => {
      try {
        return [proc(Number(d))];
      } catch {
        return [];
      }
    });
  const out = all.filter((p) => p.pid === rootPid);
  for (let i = 0; i < out.length; i++) out.push(...all.filter((p) => p.ppid === out[i].pid));
  return out;
}

/** Inodes of the TCP sockets (IPv4 and IPv6) whose local port, remote port and state (hex, "0A" listening) match. */
function tcpInodes(match: (local: number, remote: number, state: string) => boolean): string[] {
  const out: string[] = [];
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(f, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const port = (addr: string): number => parseInt(addr.split(':')[1], 16);
      // An orphaned socket (closed by its process, still in the kernel) has inode 0.
      if (cols[9] !== '0' && match(port(cols[1]), port(cols[2]), cols[3])) out.push(cols[9]);
    }
  }
  return out;
}

/** Inodes of the sockets listening on these TCP ports. */
export const listeningInodes = (ports: number[]): string[] => tcpInodes((local, _remote, state) => state === '0A' && ports.includes(local));

/** Inodes of the sockets connected to this remote port (a client's local port seen from the server). */
export const inodesTo = (remotePort: number): string[] => tcpInodes((_local, remote) => remote === remotePort);
