#!/usr/bin/env node
// Verifies debug-me logs with the browser's verifier: `node cli.mjs FILE...` prints one JSON
// verdict per file, one per line, exactly as `kanava verify --json FILE...` does (the
// differential test compares the two); exits 1 when any log fails.
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { verifyLogBytes } from './index.js';

/** The texts Rust's `io::Error` gives for the errors reading a file may meet. */
const IO_ERRORS = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
};

function ioError(error) {
  const text = IO_ERRORS[error.code];
  const number = constants.errno[error.code];
  return text !== undefined && number !== undefined ? `${text} (os error ${number})` : error.message;
}

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
    verdict = { verified: false, line: null, error: `cannot read it: ${ioError(error)}`, signature_checks: 0 };
  }
  failed ||= !verdict.verified;
  process.stdout.write(`${JSON.stringify({ path, ...verdict })}\n`);
}
process.exitCode = failed ? 1 : 0;
