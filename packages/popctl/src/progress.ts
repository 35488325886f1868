// identity: the admin
/** A progress bar on a terminal (stderr), redrawn at most ten times a second. */
export class Progress {
  private last = 0;
  constructor(
    private out: NodeJS.WriteStream,
    private total: number,
  ) {}

  static forStderr(total: number): Progress | null {
    return process.stderr.isTTY ? new Progress(process.stderr, total) : null;
  }

  update(done: number, messages: number, force = false): void {
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const width = 30;
    const filled = Math.round(frac * width);
    this.out.write(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.floor(frac * 100)).padStart(3)}% ${messages} messages`);
  }

  end(): void {
    this.out.write('\n');
  }
}
