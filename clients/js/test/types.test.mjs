// The package's TypeScript types (switchboard.d.ts, switchboard.d.mts) are
// checked with `tsc --noEmit` against test/types/, which uses the package by
// its name through both its ESM and its CommonJS entries, as users would.
// Its ESM entry is also imported for real here.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Switchboard, * as named from 'switchboard-client';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

test('tsc --noEmit accepts the types as users use them, and refuses misuse', async () => {
  const tsc = require.resolve('typescript/bin/tsc');
  const { code, out } = await new Promise((resolve) => {
    execFile(process.execPath, [tsc, '--noEmit', '-p', path.join(here, 'types', 'tsconfig.json')], { timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code : 0, out: stdout + stderr })
    );
  });
  assert.equal(code, 0, `tsc failed:\n${out}`);
});

test('the ESM entry exports what the CommonJS one does', () => {
  const cjs = require('switchboard-client');
  assert.equal(Switchboard, cjs);
  for (const name of ['Client', 'Subscription', 'SwitchboardError', 'validChannel', 'version', 'protocolVersion']) {
    assert.equal(named[name], cjs[name], name);
  }
  assert.equal(named.validChannel('chat:lobby'), true);
});

test('package.json is publishable: not private, with exports, types and files that exist', async () => {
  const pkg = require('../package.json');
  const { existsSync } = await import('node:fs');
  assert.notEqual(pkg.private, true);
  assert.equal(pkg.types, 'switchboard.d.ts');
  for (const f of pkg.files) assert.ok(existsSync(path.join(here, '..', f)), `${f} is listed in files but missing`);
  assert.equal(pkg.exports['.'].import.default, './switchboard.mjs');
  assert.equal(pkg.exports['.'].require.default, './switchboard.js');
});
