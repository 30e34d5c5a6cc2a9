// The words of the /verify page, the same as `kanava verify` prints them
// (crates/debugme-tools/src/report.rs, `Verdict::text`), so that a reader can compare the two;
// and the one way the page shows text from a file: every character visible, none able to
// restyle, reorder or hide what follows.

import { sanitize } from '../../src/text.js';

/** The largest file the page verifies: a bigger one is refused at once rather than read. */
export const MAX_FILE_BYTES = 64 * 1024 * 1024;

/** `1 line`, `2 lines`. */
export function count(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** `3, 7`: the lines of a key's decisions. */
function join(lines) {
  return lines.join(', ');
}

/** The first line of a verdict, without the file name: what `kanava verify` prints after `PATH: `. */
export function verdictText(verdict) {
  if (!verdict.verified) return verdict.error;
  return `verified: ${count(verdict.lines, 'line', 'lines')}, ${count(verdict.activities, 'activity', 'activities')}, ${count(verdict.controls, 'control message', 'control messages')}; all signatures and hashes are valid`;
}

/** One key of a verified log, as `kanava verify` lists it. */
export function keyText(key) {
  const gpg = key.gpg_signer ? `, GnuPG: ${key.gpg_signer}` : '';
  let decision = '';
  if (key.role !== 'user') {
    const accepted = key.accepted_at ?? [];
    const rejected = key.rejected_at ?? [];
    if (!accepted.length && !rejected.length) decision = '; no decision in the log';
    else if (!rejected.length) decision = `; accepted by the user at line ${join(accepted)}`;
    else if (!accepted.length) decision = `; rejected by the user at line ${join(rejected)}`;
    else decision = `; accepted at line ${join(accepted)}, rejected at line ${join(rejected)}`;
  }
  return `${key.role} key ${key.key} (line ${key.line}${gpg})${decision}`;
}

/** The bytes as a size a person reads: `64 MiB`, `1.5 KiB`, `12 bytes`. */
export function sizeText(bytes) {
  const units = ['KiB', 'MiB', 'GiB'];
  if (bytes < 1024) return count(bytes, 'byte', 'bytes');
  let value = bytes;
  let unit = 'bytes';
  for (const next of units) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  const shown = Number.isInteger(value) ? String(value) : value.toFixed(1);
  return `${shown} ${unit}`;
}

/** Why a file is refused before it is read, or null when it may be verified. */
export function refusal(bytes) {
  if (bytes <= MAX_FILE_BYTES) return null;
  return `refused: the file is ${sizeText(bytes)}, more than the ${sizeText(MAX_FILE_BYTES)} this page verifies (run \`kanava verify\` on it)`;
}

/** `text` as the chat and the SSH chat show text from others (web/src/text.js's `sanitize`):
 *  C0 controls, ESC and DEL in caret notation (`^[`, `^?`), C1 and bidirectional controls as
 *  U+FFFD; line breaks and tabs as spaces, so one line stays one line. */
export function harmless(text) {
  return sanitize(text).replace(/[\n\t]/g, ' ');
}
