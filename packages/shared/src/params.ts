// identity: root, _pop3d, the mail user, the recipient, the admin
/**
 * Tunables of the server's processes, each with the reason for its value
 * (docs/architecture.md cites them). Command-line defaults come from here.
 * What the admin sets on the command line travels to authpop and wrkrpop
 * in popd's first message; the constants here are read by each process
 * itself (one install: the IPC's PROTOCOL refuses a mix of versions).
 */
import os from 'node:os';

// ---- connections and logins (popd) ----

/** -m: connections at once, every state; each costs a socket in popd's accept path and one in authpop. */
export const DEFAULT_MAX_CONN = 1000;
/** -M: connections at once from one network, an IPv4 address or an IPv6 /64 (a NAT or a webmail shares one). */
export const DEFAULT_MAX_PER_ADDR = 20;
/** -t, seconds: a client's own time to log in. The server's waits (bcrypt queue, a busy worker) are not counted. */
export const DEFAULT_LOGIN_TIMEOUT_S = 30;
/** -i, seconds: RFC 1939 section 3 asks for an inactivity timer of at least 10 minutes. */
export const DEFAULT_IDLE_TIMEOUT_S = 600;
/** A TLS handshake (implicit, or after STLS) must end within this, whatever the login time left. */
export const HANDSHAKE_TIMEOUT_MS = 30_000;
/**
 * A connection closing after its last line may take this long to flush it
 * before it is destroyed; and a worker reads what its client still sends
 * after a session's end at most this long. Only a client that stops reading
 * meets it there: its session counts as in use that long after QUIT.
 */
export const CLOSE_LINGER_MS = 5_000;
/** After one side of a relay ends (QUIT, a crash, a client gone), the other may take this long to finish. */
export const RELAY_LINGER_MS = 10_000;
/**
 * authpop reads a worker's answers at most this much at a time, into one
 * buffer per process, and holds at most this much (encrypted) per connection
 * for a client that does not read; loopback TCP buffers hold far more. 16
 * whole TLS records. authpop's CPU per 100 MB of 10 MB messages, same run:
 * 82 ms at 64 KiB, 79 at 128 KiB, 74 at 256 KiB.
 */
export const RELAY_CHUNK = 256 * 1024;
/** A TLS record's largest plaintext (RFC 8446, 5.1): the worker writes whole multiples of it, so that the relay fills every record. */
export const TLS_RECORD = 16 * 1024;
/**
 * The worker writes what it has gathered once this much is (in whole
 * records), without waiting for the answer's end, and reads a message file
 * at most this much at a time: a 10 MB message takes about 80 reads and
 * writes, and a read with its edits stays far below SLICE_MS, so sessions
 * sharing the worker take turns between blocks.
 */
export const OUTPUT_BLOCK = 8 * TLS_RECORD;
/**
 * After RETR of k right after k-1 (or of 1 first), the worker reads k+1 ahead while
 * the client is silent, if it is at most this large on disk (one block): a
 * client fetching one message at a time (fetchmail, mpop, Thunderbird) then
 * finds its answer ready. Larger messages gain little, their time being the
 * bytes; held at most until the client has been silent QUIET_MS.
 */
export const READ_AHEAD_MAX = OUTPUT_BLOCK;
/** After a failed login, authpop waits this long before it answers: online guessing costs a second a try. */
export const FAIL_DELAY_MS = 1_000;
/** Failed logins on one connection before it is closed. */
export const MAX_FAILURES = 3;
/** bcrypt checks at once: one thread each, at most one per core (measured: more threads than cores only add latency). */
export const MAX_CHECKS = Math.max(1, Math.min(4, os.availableParallelism()));
/** Checks waiting for a thread: as many as connections, so a burst of logins queues and never fails while -m holds. */
export const maxWaitingChecks = (maxConn: number): number => maxConn;
/** Connections over a cap that authpop is still telling so; beyond this they are just closed. */
export const MAX_REFUSING = 64;
/** Connections accepted while no authpop is ready wait for one, this many at most. */
export const MAX_QUEUED = 256;
/**
 * The login budget (docs/architecture.md, "Login budget"): failed password
 * checks per user name, from every connection and address together, 20 at
 * once and then 1 a second: 86,400 guesses a day at most, where 20
 * reconnecting connections from one address made 18 a second (1.5 million a
 * day) before. A check under way holds a token until its answer, so the
 * burst also covers a user's clients logging in at once (a dozen reconnecting
 * after a QUIT); a user's own clients fail a few times after a password
 * change, far below it. At 1 a second a network that has not tried the user
 * name waits at most about a second behind an attacker for its turn.
 */
export const LOGIN_USER_BURST = 20;
export const LOGIN_USER_PER_S = 1;
/**
 * Failed checks per network (an IPv4 address, an IPv6 /64), over every user
 * name: password spraying. A NAT or a webmail carries many users' typos, so
 * this is looser than one user's; at 2 a second one network's failures take
 * at most a seventh of what 2 bcrypt threads check at cost 10 (14 a second,
 * measured). Charged when a check fails: its right passwords cost nothing.
 */
export const LOGIN_NET_BURST = 30;
export const LOGIN_NET_PER_S = 2;
/** A network that has not tried a user name waits at most this long for the name's next check; beyond it is refused [SYS/TEMP]. */
export const LOGIN_WAIT_MAX_MS = 5_000;
/** A network that tried a user name (or was refused for it) this recently is refused at once while the name has no checks left. */
export const LOGIN_MARK_MS = 60_000;
/**
 * A network that logged a user name in keeps a lane of its own to it while
 * the name's checks are used up by others: 5 at once (a household's phones
 * and laptops polling together), then one a minute, so an attacker sharing
 * the user's own network gains at most 1,440 guesses a day. Kept 30 days
 * after the last right password: a client that polls weekly stays known.
 */
export const LOGIN_KNOWN_BURST = 5;
export const LOGIN_KNOWN_PER_S = 1 / 60;
export const LOGIN_KNOWN_MS = 30 * 24 * 3_600_000;
/**
 * Lanes per user name: its most recent networks (home, work, a phone's
 * changing addresses). So one account that logs in from many networks
 * cannot push the lanes of other users out of the bound below.
 */
export const LOGIN_KNOWN_PER_USER = 8;
/**
 * User names, and networks, remembered each, marks (a network that tried a
 * user name), and user names with lanes, the least recently used forgotten.
 * Measured at most: 10,000 names of 255 octets, 10,000 IPv6 networks,
 * 20,000 marks and 10,000 names with 8 lanes each take 29 MiB of heap
 * (node --expose-gc, heapUsed before and after filling them).
 */
export const LOGIN_TRACKED = 10_000;
export const LOGIN_MARKS = 20_000;
export const LOGIN_KNOWN = 10_000;
/** How long a login waits for the same user's previous session to end (a client back right after QUIT) before [IN-USE]. */
export const IN_USE_WAIT_MS = 1_000;
/** SIGTERM: how long sessions may take to end before they are ended, and then how long a signal may take. */
export const GRACE_MS = 10_000;
export const KILL_AFTER_MS = 2_000;
/** While it waits for those, popd looks again this often: only at shutdown, so a short wait costs nothing. */
export const STOP_POLL_MS = 50;

// ---- POP3 lines (authpop and wrkrpop alike) ----

/** RFC 2449 section 4: a command line is at most 255 octets plus CRLF. */
export const MAX_LINE = 255;
/** Over-long lines a session may send before it is closed as a flood: a client bug gets answers, abuse ends. */
export const MAX_LONG_LINES = 10;
/** One over-long line this long is abuse, not a mistake: the session closes. */
export const MAX_DISCARD = 64 * 1024;

// ---- children (popd supervising authpop and wrkrpop) ----

/** -A: authpop processes. One per core does every TLS handshake and relay in parallel; more only add memory. */
export const DEFAULT_AUTHPOPS = os.availableParallelism();
/** A dead authpop is restarted after this, doubled after each quick death, up to the maximum. */
export const MIN_BACKOFF_MS = 100;
export const MAX_BACKOFF_MS = 30_000;
/** A run this long resets the backoff. */
export const STABLE_MS = 60_000;
/** -K, seconds: a per-uid worker without sessions for this long exits (its next login waits for no start: a spare is ready). */
export const DEFAULT_WORKER_IDLE_S = 300;
/**
 * A spare wrkrpop starts at this nice value and is set back to 0 when a
 * session takes it: its Node start-up (about 50 ms of CPU) then runs on idle
 * CPU rather than beside the session that took the spare before it (a first
 * open of 1,000 messages on a fresh worker: 91 ms beside it, 54-58 ms at
 * nice 19; 18-29 ms on a warm worker).
 */
export const SPARE_NICE = 19;
/** Workers started ahead of need, as root and holding nothing: a login never waits for Node's start-up (about 50 ms of CPU). */
export const SPARES_PER_UID = 1;
/** In per-session mode every login takes one; a burst beyond them waits for processes being started. */
export const SPARES_PER_SESSION = 4;
/** Log lines a child may send: this many a second on average, this many at once; more are dropped and counted. */
export const LOG_PER_SECOND = 200;
export const LOG_BURST = 1000;
/** Dropped lines are reported in one line at most this often: a flood of children's lines is not answered by a flood of popd's. */
export const LOG_DROP_REPORT_MS = 10_000;
/**
 * A child about to exit waits this long at most for its last messages (a
 * session's summary, the reason it exits) to leave: a popd that stopped
 * reading must not keep it alive.
 */
export const EXIT_FLUSH_MS = 2_000;
/**
 * A worker that could not be confined exits this long after saying so:
 * sessions popd sent before it read the failure are on their way, and each
 * gets the refusal instead of a closed socket.
 */
export const REFUSED_EXIT_MS = 100;
/** Longer than any real log line: what follows is dropped up to the line's end. */
export const MAX_CHILD_LINE = 4096;

// ---- a worker's shared event loop (wrkrpop, the store) ----

/**
 * A long loop (listing, renaming or indexing 100,000 messages) gives the
 * event loop a turn after holding it this long: other sessions of the
 * worker wait at most about that (npm run bench -- fairness: 36-41 ms at most,
 * in two runs, during a 100,000-message first open).
 */
export const SLICE_MS = 10;
/**
 * Background work (moving new mail to cur/) waits until the client has been
 * silent this long, so that a client fetching message after message never
 * waits for it: over a fast link it never pauses this long, over a slow one
 * a slice of work ends before its next command arrives.
 */
export const QUIET_MS = 20;
/**
 * The maildir's record (popcache.state) trusts a listing of cur/ or new/
 * only if the directory had not changed for this long before the listing
 * began, by the filesystem's clock: two changes within one tick of it leave
 * the same mtime, and a tick is a few ms on ext4 and tmpfs, 1 s or 2 s on
 * others. Dovecot's rule for its maildir index; so the first open after a
 * change lists the directories again, the next ones need not.
 */
export const STATE_SETTLE_MS = 2000;

// ---- popctl ----

/** popctl encrypt -c: bcrypt cost 10, OpenBSD's default for crypt_newhash(3) "bcrypt,a" on current hardware, about 70 ms a check here. */
export const DEFAULT_BCRYPT_COST = 10;

// ---- the maildir store (wrkrpop, popmda, popctl) ----

/** Maildir convention (qmail's maildir(5)): files left in tmp/ this long are debris of a crashed delivery, removed at the next open. */
export const TMP_MAX_AGE_MS = 36 * 3600 * 1000;
/** How long a delivery or an open waits for popcache's lock before it gives up (a delivery then exits 75 and smtpd retries). */
export const POPCACHE_LOCK_TIMEOUT_MS = 30_000;
/** Larger than any real popcache (about 150 bytes a message, 15 MB for 100,000): treated as corrupt rather than read into memory. */
export const MAX_POPCACHE_BYTES = 256 * 1024 * 1024;
/** Larger than the record of any real mailbox (100,000 messages in alternating runs take about 1.5 MB): not trusted, the directories are read. */
export const MAX_STATE_BYTES = 4 * 1024 * 1024;
/** Largest read when counting a message's wire octets: one read for most messages, a bounded buffer for any. */
export const COUNT_CHUNK = 256 * 1024;
