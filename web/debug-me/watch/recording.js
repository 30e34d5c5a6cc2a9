// Everything the page received of a session, in order, as the verifier decoded it: the
// messages with their times (for the event list, the replay and the downloads) and the user's
// terminal output ready to draw.

import { StringSequenceFilter } from './sequences.js';
import { TerminalSize } from './terminal-size.js';

/** A usable number of seconds: negative, NaN and infinite times count as none (as in Rust). */
function seconds(elapsed) {
  return Number.isFinite(elapsed) && elapsed > 0 ? elapsed : 0;
}

/** The session as received: its messages and the user's output. */
export class Recording {
  constructor() {
    /** `{index, kind, side, trusted, message, time, arrived}`: `time` in seconds since the
     *  session began by the user's signed elapsed times, `arrived` a Date when received live. */
    this.entries = [];
    /** The user's Seen output: `{time, bytes, shown, trusted}`, `shown` with string sequences
     *  dropped (what the page draws). */
    this.outputs = [];
    this.size = new TerminalSize();
    this.filter = new StringSequenceFilter();
    /** Seconds since the session began, as the user's activities tell. */
    this.time = 0;
    /** Unix time (seconds) when the first message arrived. */
    this.firstArrival = null;
  }

  /** Adds a verifier Event received at `arrivedMs` (ms since the epoch); `live` when it came
   *  as it happened rather than in the replay of the log so far. Returns the entry. */
  add(event, arrivedMs, live) {
    const { message } = event;
    if (this.firstArrival === null) this.firstArrival = arrivedMs / 1000;
    if (event.kind === 'seen') this.time += seconds(message.elapsedTime);
    const entry = {
      index: event.index,
      kind: event.kind,
      side: event.side,
      trusted: event.trusted,
      message,
      time: this.time,
      arrived: live ? new Date(arrivedMs) : null,
      logged: arrivedMs / 1000,
    };
    this.entries.push(entry);
    if (event.kind === 'seen') {
      const bytes = message.output;
      const output = { time: this.time, bytes, shown: this.filter.filter(bytes), trusted: event.trusted };
      output.grew = this.size.push(output.shown);
      this.outputs.push(output);
    }
    return entry;
  }

  /** How long the session lasted, by the user's signed times. */
  get duration() {
    return this.time;
  }

  /** How many outputs are at or before `time`. */
  outputsUntil(time) {
    let low = 0;
    let high = this.outputs.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.outputs[middle].time <= time) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}
