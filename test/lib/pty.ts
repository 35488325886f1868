/** Runs a program on a real pseudo-terminal (python3's pty module) to test what popctl does on a TTY. */
import { spawnSync } from 'node:child_process';

const DRIVER = `
import json, os, pty, select, subprocess, sys, time
script = json.loads(sys.argv[1])
m, s = pty.openpty()
p = subprocess.Popen(script["argv"], stdin=s, stdout=subprocess.PIPE, stderr=s, close_fds=True)
os.close(s)
tty = b""
steps = list(script["steps"])
deadline = time.time() + 20
while time.time() < deadline:
    r, _, _ = select.select([m], [], [], 0.05)
    if r:
        try:
            chunk = os.read(m, 4096)
        except OSError:
            chunk = b""
        if not chunk and p.poll() is not None:
            break
        tty += chunk
    while steps and steps[0][0].encode() in tty.split(b"\\x00")[-1]:
        tty += b"\\x00"  # marks how far prompts were answered
        os.write(m, steps.pop(0)[1].encode())
    if p.poll() is not None and not r:
        break
out = p.stdout.read()
p.wait()
print(json.dumps({"status": p.returncode, "stdout": out.decode("latin1"), "tty": tty.replace(b"\\x00", b"").decode("latin1")}))
`;

export interface PtyResult {
  status: number;
  stdout: string;
  /** Everything the program wrote to the terminal (stderr and echo). */
  tty: string;
}

export const hasPython = spawnSync('python3', ['-c', 'import pty'], { stdio: 'ignore' }).status === 0;

/** steps: [text to wait for on the terminal, what to type then]. */
export function runOnPty(argv: string[], steps: Array<[string, string]>): PtyResult {
  const r = spawnSync('python3', ['-c', DRIVER, JSON.stringify({ argv, steps })], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`pty driver failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as PtyResult;
}
