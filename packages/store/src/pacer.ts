// identity: the mail user, the recipient, the admin
/**
 * Long synchronous loops (listing, renaming or indexing 100,000 messages,
 * writing 100 MB of one message) run in a worker that serves many sessions
 * in one event loop: each gives the loop a turn once it has held it for
 * SLICE_MS, so that no other session waits longer than that for its I/O.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { SLICE_MS } from '@popd/shared/params';

/** tick() reads the clock every this many steps: a reading costs about 70 ns, more than a step of some loops. */
export const CHECK_EVERY = 32;

export class Pacer {
  private since = performance.now();
  private steps = 0;

  /** Whether this slice is used up; reads the clock, for loops whose steps take about a millisecond (a 128 KB chunk). */
  due(): boolean {
    return performance.now() - this.since >= SLICE_MS;
  }

  /** One short step done (a directory entry, a rename): due(), with the clock read only every CHECK_EVERY steps. */
  tick(): boolean {
    if (++this.steps < CHECK_EVERY) return false;
    this.steps = 0;
    return this.due();
  }

  /** Lets the event loop run what waits (timers, other sessions' I/O), then starts the next slice. */
  async yield(): Promise<void> {
    await nextTurn();
    this.since = performance.now();
    this.steps = 0;
  }
}
