// The /verify page's Web Worker: verifies the log files the page hands it, one at a time, off
// the page's thread, with the browser's own verifier (web/debug-me/verifier), and answers with
// each file's verdict (as `kanava verify --json` gives it) and the marks of its chain drawing.
// Nothing here touches the network except the openpgp chunk the verifier imports for a GnuPG
// signature.
//
// Messages in: { id, file } (a File). Messages out: { id, type: 'progress', done, total } while
// the lines are read, { id, type: 'verifying', lines } while they are verified, then
// { id, type: 'result', verdict, marks }.

import { decodeLine, verifyLogBytes } from './verifier/index.js';
import { MarkCollector } from './verify/marks.js';
import { refusal } from './verify/text.js';

/** How often, at most, progress is reported (ms): often enough to move, rarely enough to cost nothing. */
const PROGRESS_EVERY_MS = 100;

/** A line the verifier skips, as Rust's `str::trim` sees it: Unicode white space only. */
const BLANK = /^\p{White_Space}*$/u;

/** The marks of the drawing, one per line that is not blank, reporting progress as it reads. */
function collectMarks(bytes, report) {
  const lines = new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes).split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const collector = new MarkCollector();
  let reported = Date.now();
  lines.forEach((raw, at) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (BLANK.test(line)) return;
    let decoded = null;
    try {
      decoded = decodeLine(line);
    } catch {
      // Not a log line: drawn as such; the verdict says why.
    }
    collector.add(at + 1, decoded);
    if (Date.now() - reported > PROGRESS_EVERY_MS) {
      reported = Date.now();
      report({ type: 'progress', done: at + 1, total: lines.length });
    }
  });
  return collector;
}

/** Verifies one file: its verdict and its marks. */
async function verifyFile(file, report) {
  const refused = refusal(file.size);
  const failure = (error) => ({ verdict: { verified: false, line: null, error, signature_checks: 0 }, marks: [] });
  if (refused) return failure(refused);
  let bytes;
  try {
    bytes = new Uint8Array(await file.arrayBuffer());
  } catch (error) {
    return failure(`cannot read it: ${error.message}`);
  }
  const collector = collectMarks(bytes, report);
  report({ type: 'verifying', lines: collector.marks.length });
  const chain = new Map();
  const verdict = await verifyLogBytes(bytes, {
    onChain: (line, hash, pointers) => chain.set(line, { hash, pointers }),
  });
  collector.link(chain);
  return { verdict, marks: collector.finish(verdict.verified ? null : verdict.line) };
}

/** Files wait here while an earlier one is verified: one at a time keeps memory bounded. */
let queue = Promise.resolve();

self.onmessage = ({ data: { id, file } }) => {
  queue = queue.then(async () => {
    let answer;
    try {
      answer = await verifyFile(file, (progress) => self.postMessage({ id, ...progress }));
    } catch (error) {
      answer = {
        verdict: { verified: false, line: null, error: `the page's verifier failed: ${error.message}`, signature_checks: 0 },
        marks: [],
      };
    }
    self.postMessage({ id, type: 'result', ...answer });
  });
};
