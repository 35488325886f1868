'use strict';
// npm's install script for the project's C addons, run in the package's directory: the
// channel here, and wrkrpop's wireedit (its package runs this file). Plain JS: it runs
// before anything is compiled.
// node-gyp downloads Node's headers unless told where they are; a node installed by a
// package or tarball ships them under its own prefix (/usr/include/node), so point
// node-gyp there when they exist and the user has not chosen a nodedir himself.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const env = { ...process.env };
const prefix = path.resolve(process.execPath, '..', '..');
if (!env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) env.npm_config_nodedir = prefix;
// npm sets npm_config_node_gyp to its bundled node-gyp for every lifecycle script.
const gyp = env.npm_config_node_gyp;
if (!gyp) {
  console.error(`${require(path.resolve('package.json')).name}: run me through npm (npm install / npm ci / npm rebuild)`);
  process.exit(1);
}
const r = spawnSync(process.execPath, [gyp, 'rebuild'], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
