/**
 * A private Dovecot (Debian's dovecot-pop3d) to measure popd against: run as
 * root in the foreground (dovecot -F) from a configuration of its own, with
 * base_dir, state_dir and log in a temporary directory, POP3 over implicit
 * TLS 1.3 only on a free loopback port, users from a passwd-file holding the
 * given bcrypt hashes, maildirs at mailRoot/USER owned by uid:gid. Everything
 * else is Dovecot's default, among them the "high-security" process mode (one
 * pop3-login process per connection, which with TLS stays as the session's
 * TLS proxy, and one pop3 process per session) and its index files in the
 * maildir itself.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

// Static imports would compile to "../test/lib/...", which does not exist next to bench/dist: load the compiled helpers from test/dist.
const testLib = (name: string): string => path.join(__dirname, '..', '..', 'test', 'dist', 'lib', name);
const { freePort, portOpen, waitFor } = require(testLib('mailhost')) as typeof import('../test/lib/mailhost');

export const DOVECOT = '/usr/sbin/dovecot';

/** "2.3.19.1 (9b53102964)", or null when Dovecot is not installed. */
export function dovecotVersion(): string | null {
  const r = spawnSync(DOVECOT, ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

export interface DovecotOptions {
  /** Users and their bcrypt hashes ($2b$...). */
  accounts: Array<{ user: string; hash: string }>;
  uid: number;
  gid: number;
  /** The maildir of USER is mailRoot/USER. */
  mailRoot: string;
  cert: string;
  key: string;
  /** An empty directory for the configuration, runtime and state. */
  dir: string;
  port: number;
}

/** The whole configuration (no include of /etc/dovecot): the defaults, and what a private instance must set. */
export function dovecotConfig(o: DovecotOptions): string {
  return `# Private Dovecot for npm run bench -- compare: Dovecot's defaults but for these lines.
base_dir = ${o.dir}/run
state_dir = ${o.dir}/state
log_path = ${o.dir}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = required
ssl_cert = <${o.cert}
ssl_key = <${o.key}
ssl_min_protocol = TLSv1.3
mail_location = maildir:${o.mailRoot}/%u
${o.uid < 500 ? `first_valid_uid = ${o.uid}\n` : ''}# Every login process connects to anvil, auth and log: their client limit (default 1000)
# must cover pop3-login's process_limit below, or Dovecot warns.
default_client_limit = 2000
passdb {
  driver = passwd-file
  args = ${o.dir}/passwd
}
userdb {
  driver = passwd-file
  args = ${o.dir}/passwd
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = ${o.port}
  }
  # Each TLS session keeps its login process as TLS proxy: the default of 100 would
  # cap sessions at 100 (popd's default cap is 1,000 connections).
  process_limit = 1000
}
`;
}

export class DovecotServer {
  private readonly exited: Promise<void>;
  private stderr = '';

  private constructor(
    readonly proc: ChildProcess,
    readonly port: number,
    readonly dir: string,
    readonly config: string,
  ) {
    this.exited = new Promise((resolve) => proc.on('exit', () => resolve()));
    proc.stderr!.on('data', (b: Buffer) => (this.stderr += b.toString()));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get logPath(): string {
    return path.join(this.dir, 'dovecot.log');
  }

  static async start(o: Omit<DovecotOptions, 'port'>): Promise<DovecotServer> {
    const port = await freePort();
    const config = dovecotConfig({ ...o, port });
    const conf = path.join(o.dir, 'dovecot.conf');
    fs.writeFileSync(conf, config);
    // passwd-file: user:{SCHEME}hash:uid:gid:gecos:home:shell:extra. No home: the maildir path is absolute.
    fs.writeFileSync(path.join(o.dir, 'passwd'), o.accounts.map((a) => `${a.user}:{BLF-CRYPT}${a.hash}:${o.uid}:${o.gid}::::\n`).join(''));
    const proc = spawn(DOVECOT, ['-F', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    const d = new DovecotServer(proc, port, o.dir, config);
    await waitFor('dovecot to listen', async () => {
      if (proc.exitCode !== null) throw new Error(`dovecot exited: ${d.stderr}${fs.existsSync(d.logPath) ? fs.readFileSync(d.logPath, 'utf8') : ''}`);
      return portOpen(port);
    });
    return d;
  }

  /** Warnings and errors Dovecot logged (its log holds one info line per login, not these). */
  problems(): string[] {
    const lines = [...this.stderr.split('\n'), ...(fs.existsSync(this.logPath) ? fs.readFileSync(this.logPath, 'utf8').split('\n') : [])];
    // The SIGTERM of stop() shows up as a warning too.
    return lines.filter((l) => /\b(Warning|Error|Fatal|Panic):/.test(l) && !/Killed with signal 15/.test(l));
  }

  /** SIGTERM to the master, which stops its children; resolves when it has exited. */
  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    await this.exited;
  }
}
