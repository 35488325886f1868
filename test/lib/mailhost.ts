/**
 * A private mail host for integration tests, as root: a mount namespace in
 * which /dev/log leads to a syslog daemon of the test's own, and OpenSMTPD
 * has its own spool and control socket. The machine's own syslog daemon,
 * smtpd and /dev stay untouched: the namespace's /dev is a tmpfs of symlinks
 * to the real device nodes, plus log.
 */
import { ChildProcess, spawn, spawnSync, SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const haveTool = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Ports freePort has handed out in this process. */
const handedOut = new Set<number>();

/**
 * A port that was free a moment ago on 127.0.0.1, and never handed out before
 * by this process: the kernel may give the port just closed again (about 1 in
 * 7,000 here), and two listeners of one popd would then collide.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.on('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const got = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(got));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

export class MailHost {
  private holder: ChildProcess;
  private children: ChildProcess[] = [];
  readonly devlog: string;
  readonly output = new Map<ChildProcess, string>();

  private constructor(readonly dir: string) {
    this.devlog = path.join(dir, 'devlog');
    const olddev = path.join(dir, 'olddev');
    fs.mkdirSync(olddev);
    const script = [
      'set -e',
      `mount --rbind /dev ${olddev}`,
      'mount -t tmpfs -o mode=755 tmpfs /dev',
      `for f in ${olddev}/* ${olddev}/.[!.]*; do if [ -e "$f" ] || [ -L "$f" ]; then ln -s "$f" /dev/; fi; done`,
      'rm -f /dev/log',
      `ln -s ${this.devlog} /dev/log`,
      'mount -t tmpfs -o mode=755 tmpfs /var/spool',
      'mkdir -m 711 /var/spool/smtpd',
      'mount -t tmpfs -o mode=755 tmpfs /run',
      'echo ready',
      'exec sleep 100000',
    ].join('\n');
    this.holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  }

  static async start(dir: string): Promise<MailHost> {
    const h = new MailHost(dir);
    let out = '';
    h.holder.stdout!.on('data', (b: Buffer) => (out += b));
    h.holder.stderr!.on('data', (b: Buffer) => (out += b));
    await waitFor('the mount namespace', () => {
      if (h.holder.exitCode !== null) throw new Error(`unshare failed: ${out}`);
      return out.includes('ready');
    });
    return h;
  }

  /** The arguments that run a command inside the namespace, optionally as uid:gid. */
  nsArgs(argv: string[], as?: { uid: number; gid: number }): string[] {
    const ids = as ? [`--setuid=${as.uid}`, `--setgid=${as.gid}`] : [];
    return [`--mount=/proc/${this.holder.pid}/ns/mnt`, ...ids, '--', ...argv];
  }

  /** Starts a long-running program inside the namespace (stopped by stop()). */
  spawn(argv: string[], opts: SpawnOptions & { as?: { uid: number; gid: number } } = {}): ChildProcess {
    const c = spawn('nsenter', this.nsArgs(argv, opts.as), { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.output.set(c, '');
    c.stdout?.on('data', (b: Buffer) => this.output.set(c, this.output.get(c) + b.toString()));
    c.stderr?.on('data', (b: Buffer) => this.output.set(c, this.output.get(c) + b.toString()));
    this.children.push(c);
    return c;
  }

  /** Runs a program to completion inside the namespace. */
  run(argv: string[], as?: { uid: number; gid: number }): { status: number | null; out: string } {
    const r = spawnSync('nsenter', this.nsArgs(argv, as), { encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, out: r.stdout + r.stderr };
  }

  private syslog: ChildProcess | null = null;

  /** Stops rsyslogd and starts it again, as a log rotation or an upgrade does. */
  async restartSyslog(): Promise<void> {
    const old = this.syslog!;
    const gone = new Promise((r) => old.once('exit', r));
    old.kill('SIGTERM');
    await gone;
    fs.rmSync(this.devlog, { force: true });
    this.syslog = this.spawn(['rsyslogd', '-n', '-f', path.join(this.dir, 'rsyslog.conf'), '-i', path.join(this.dir, 'rsyslogd.pid')]);
    await waitFor('rsyslogd socket', () => fs.existsSync(this.devlog));
  }

  /** Starts rsyslogd with its own configuration on the namespace's /dev/log. */
  async startSyslog(rules: string): Promise<ChildProcess> {
    const conf = path.join(this.dir, 'rsyslog.conf');
    fs.writeFileSync(
      conf,
      [
        `global(workDirectory="${this.dir}")`,
        'module(load="imuxsock" SysSock.Use="off")',
        `input(type="imuxsock" Socket="${this.devlog}")`,
        rules,
      ].join('\n') + '\n',
    );
    const check = this.run(['rsyslogd', '-N1', '-f', conf]);
    if (check.status !== 0) throw new Error(`rsyslog configuration rejected: ${check.out}`);
    this.syslog = this.spawn(['rsyslogd', '-n', '-f', conf, '-i', path.join(this.dir, 'rsyslogd.pid')]);
    await waitFor('rsyslogd socket', () => fs.existsSync(this.devlog));
    return this.syslog;
  }

  async stop(): Promise<void> {
    for (const c of [...this.children.reverse(), this.holder]) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    }
  }
}
