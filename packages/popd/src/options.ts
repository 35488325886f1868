// identity: root
/**
 * popd's command line, OpenBSD style:
 * popd [-dhnVv] -a authtab -u usertab -c cert -k key -l address[:port] [-l ...]
 *      [-s address[:port]] [-e subdir] [-U user] [-C chrootdir] [-m maxconn]
 *      [-M maxperaddr] [-t logintimeout] [-i idletimeout] [-A authpops]
 *      [-W uid | session] [-K workeridle]
 */
import net from 'node:net';
import { Command, InvalidArgumentError } from 'commander';
import {
  DEFAULT_AUTHPOPS,
  DEFAULT_IDLE_TIMEOUT_S,
  DEFAULT_LOGIN_TIMEOUT_S,
  DEFAULT_MAX_CONN,
  DEFAULT_MAX_PER_ADDR,
  DEFAULT_WORKER_IDLE_S,
} from '@popd/shared/params';
import { VERSION } from '@popd/shared/version';
import type { Isolation } from './wrkrpop-supervisor';

export interface Listen {
  host: string;
  port: number;
  /** Implicit TLS, or plain POP3 with mandatory STLS. */
  mode: 'tls' | 'stls';
}

export interface Options {
  authtab: string;
  usertab: string;
  cert: string;
  key: string;
  listen: Listen[];
  subdir?: string;
  user: string;
  chroot: string;
  maxConn: number;
  maxPerAddr: number;
  loginTimeoutMs: number;
  idleTimeoutMs: number;
  authpops: number;
  isolation: Isolation;
  workerIdleMs: number;
  foreground: boolean;
  verbosity: number;
  check: boolean;
}

/** "1.2.3.4", "1.2.3.4:995", "[::1]" or "[::1]:995"; null when malformed. */
export function parseAddress(s: string, defaultPort: number): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(s);
  if (!m) return null;
  const host = m[1] ?? m[2];
  if (m[1] !== undefined ? !net.isIPv6(host) : !net.isIPv4(host)) return null;
  const port = m[3] === undefined ? defaultPort : Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host, port };
}

function listenArg(mode: 'tls' | 'stls', defaultPort: number) {
  return (value: string, prev: Listen[] | undefined): Listen[] => {
    const a = parseAddress(value, defaultPort);
    if (a === null) throw new InvalidArgumentError('expected IPv4 address or [IPv6 address], optionally with :port');
    return [...(prev ?? []), { ...a, mode }];
  };
}

function positive(max: number) {
  return (value: string): number => {
    if (!/^\d{1,9}$/.test(value) || Number(value) < 1 || Number(value) > max) throw new InvalidArgumentError(`expected a whole number from 1 to ${max}`);
    return Number(value);
  };
}

function isolationArg(value: string): Isolation {
  if (value !== 'uid' && value !== 'session') throw new InvalidArgumentError('expected uid or session');
  return value;
}

interface Raw {
  authtab: string;
  usertab: string;
  cert: string;
  key: string;
  listen?: Listen[];
  stls?: Listen[];
  subdir?: string;
  user: string;
  chroot: string;
  maxconn: number;
  maxperaddr: number;
  logintimeout: number;
  idletimeout: number;
  authpops: number;
  workers: Isolation;
  workeridle: number;
  debug?: boolean;
  verbose: number;
  check?: boolean;
}

export function program(): Command {
  return new Command('popd')
    .description('Privilege-separated POP3 server for maildirs (TLS 1.3 only).')
    .usage('[-dhnVv] -a authtab -u usertab -c cert -k key -l address[:port] [-l ...] [-s address[:port]] [-e subdir] [-U user] [-C chrootdir] [-m maxconn] [-M maxperaddr] [-t logintimeout] [-i idletimeout] [-A authpops] [-W uid | session] [-K workeridle]')
    .requiredOption('-a, --authtab <authtab>', 'user names and bcrypt hashes')
    .requiredOption('-u, --usertab <usertab>', 'user names and uid:gid:maildir')
    .requiredOption('-c, --cert <cert>', 'TLS certificate chain (PEM)')
    .requiredOption('-k, --key <key>', 'TLS private key (PEM)')
    .option('-l, --listen <address[:port]>', 'implicit-TLS listener, IPv4 or [IPv6], default port 995 (repeatable)', listenArg('tls', 995))
    .option('-s, --stls <address[:port]>', 'plain listener that requires STLS before login, default port 110 (repeatable)', listenArg('stls', 110))
    .option('-e, --subdir <subdir>', 'the maildir is maildirstring/subdir')
    .option('-U, --user <user>', 'unprivileged user for authpop', '_pop3d')
    .option('-C, --chroot <chrootdir>', "authpop's empty chroot directory", '/var/empty')
    .option('-m, --maxconn <maxconn>', 'most connections at once', positive(1_000_000), DEFAULT_MAX_CONN)
    .option('-M, --maxperaddr <maxperaddr>', 'most connections at once from one network (an IPv4 address, an IPv6 /64)', positive(1_000_000), DEFAULT_MAX_PER_ADDR)
    .option('-t, --logintimeout <seconds>', "the client's time to log in", positive(86_400), DEFAULT_LOGIN_TIMEOUT_S)
    .option('-i, --idletimeout <seconds>', 'idle time after login before the session ends', positive(86_400), DEFAULT_IDLE_TIMEOUT_S)
    .option('-A, --authpops <count>', 'authpop processes (TLS and login)', positive(256), DEFAULT_AUTHPOPS)
    .option('-W, --workers <uid|session>', 'one wrkrpop process per uid (serving many sessions) or per session', isolationArg, 'uid')
    .option('-K, --workeridle <seconds>', 'a per-uid wrkrpop without sessions for this long exits', positive(86_400), DEFAULT_WORKER_IDLE_S)
    .option('-d, --debug', 'stay in the foreground and log to stderr')
    .option('-v, --verbose', 'more log detail (repeatable)', (_: string | boolean, n: number) => n + 1, 0)
    .option('-n, --check', 'check the configuration and exit (0 good, 1 problems)')
    .version(VERSION, '-V, --version')
    .helpOption('-h, --help')
    .exitOverride()
    .addHelpText('after', '\nSignals: SIGHUP reloads authtab and usertab, SIGTERM shuts down. See popd(8).');
}

/** Parses argv; commander prints usage errors and throws CommanderError. */
export function parseOptions(argv: string[]): Options {
  const p = program();
  p.parse(argv);
  const o = p.opts<Raw>();
  const listen = [...(o.listen ?? []), ...(o.stls ?? [])];
  if (listen.length === 0) {
    p.error('error: at least one -l or -s listener is required', { exitCode: 1 });
  }
  return {
    authtab: o.authtab,
    usertab: o.usertab,
    cert: o.cert,
    key: o.key,
    listen,
    subdir: o.subdir,
    user: o.user,
    chroot: o.chroot,
    maxConn: o.maxconn,
    maxPerAddr: o.maxperaddr,
    loginTimeoutMs: o.logintimeout * 1000,
    idleTimeoutMs: o.idletimeout * 1000,
    authpops: o.authpops,
    isolation: o.workers,
    workerIdleMs: o.workeridle * 1000,
    foreground: o.debug === true,
    verbosity: o.verbose,
    check: o.check === true,
  };
}
