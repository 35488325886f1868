/**
 * npm run bench: runs every bench/*.bench.ts module (compiled) in name order,
 * or only those whose name contains one of the command-line arguments.
 * Each module exports main(), which prints its own figures.
 */
import fs from 'node:fs';
import path from 'node:path';

async function runAll(): Promise<void> {
  const filters = process.argv.slice(2);
  const mods = fs
    .readdirSync(__dirname)
    .filter((f) => f.endsWith('.bench.js'))
    .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
    .sort();
  for (const f of mods) {
    console.log(`\n== ${f.replace(/\.bench\.js$/, '')}`);
    const mod = require(path.join(__dirname, f)) as { main: () => Promise<void> };
    await mod.main();
  }
}

runAll().catch((err) => {
  console.error(err);
  process.exit(1);
});
