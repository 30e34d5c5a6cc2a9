// A session as an asciicast v2 recording, built in the page from what it verified, as
// `kanava export --asciicast` builds one from a log (crates/debugme-tools/src/asciicast.rs):
// a header with the terminal size, then each user Seen as an output event at the session's
// cumulative elapsed time, its text carried across chunks that split a UTF-8 character, and
// string sequences dropped.

import { StringSequenceFilter } from './sequences.js';

/** A time in seconds, rounded to the microsecond so that sums print without noise. */
function microseconds(t) {
  return Math.round(t * 1e6) / 1e6;
}

/**
 * The asciicast v2 text (one JSON value per line, header first) of `outputs` ({time, bytes}:
 * a Seen's data and its time in seconds since the session began), recorded at `size`
 * ({cols, rows}), started at Unix time `timestamp` (seconds) when known.
 */
export function asciicast(outputs, size, timestamp) {
  const header = { version: 2, width: size.cols, height: size.rows };
  if (Number.isFinite(timestamp) && timestamp >= 0) header.timestamp = Math.trunc(timestamp);
  const lines = [JSON.stringify(header)];
  const filter = new StringSequenceFilter();
  const decoder = new TextDecoder('utf-8');
  let time = 0;
  for (const output of outputs) {
    time = output.time;
    const text = decoder.decode(filter.filter(output.bytes), { stream: true });
    if (text) lines.push(JSON.stringify([microseconds(time), 'o', text]));
  }
  const rest = decoder.decode();
  if (rest) lines.push(JSON.stringify([microseconds(time), 'o', rest]));
  return `${lines.join('\n')}\n`;
}
