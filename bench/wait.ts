/** Waiting for the server's background work in a maildir, for the benchmarks. */
import fs from 'node:fs';

/** Resolves once dir holds no entry, polled every pollMs (one entry read each time, not a listing of 100,000). */
export async function emptied(dir: string, pollMs = 20): Promise<void> {
  for (;;) {
    const d = fs.opendirSync(dir);
    const empty = d.readSync() === null;
    d.closeSync();
    if (empty) return;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
