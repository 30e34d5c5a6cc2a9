#!/usr/bin/env node
// Verifies debug-me logs with the browser's verifier: `node cli.mjs FILE...` prints one JSON
// verdict per file, one per line, exactly as `kanava verify --json FILE...` does (the
// differential test compares the two); exits 1 when any log fails.
import { readFileSync } from 'node:fs';
import { verifyLogBytes } from './index.js';

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: node cli.mjs FILE...\n');
  process.exit(2);
}
let failed = false;
for (const path of files) {
  let verdict;
  try {
    verdict = await verifyLogBytes(new Uint8Array(readFileSync(path)));
  } catch (error) {
    if (error?.code === undefined) throw error;
    verdict = { verified: false, line: null, error: `cannot read it: ${error.message}`, signature_checks: 0 };
  }
  failed ||= !verdict.verified;
  process.stdout.write(`${JSON.stringify({ path, ...verdict })}\n`);
}
process.exitCode = failed ? 1 : 0;
