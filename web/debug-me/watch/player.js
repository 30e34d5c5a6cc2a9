// Draws a recording in the terminal: live, each output as it arrives; in a replay, up to a
// point of the session's signed time, played at a chosen speed. Going back redraws from the
// start in one write (reset, then every output up to the point joined), so a seek costs one
// pass over the output whatever the session's length.

/** How often a playing replay draws (ms). */
const FRAME_MS = 40;

/** Joins byte arrays into one. */
function joined(chunks) {
  const total = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** The terminal's view of a recording. */
export class Player {
  /** `onPosition(seconds, playing)` is called whenever the position or the state changes. */
  constructor(terminal, recording, onPosition) {
    this.terminal = terminal;
    this.recording = recording;
    this.onPosition = onPosition;
    /** How many outputs the terminal shows. */
    this.drawn = 0;
    this.position = 0;
    this.speed = 1;
    this.timer = null;
  }

  get playing() {
    return this.timer !== null;
  }

  /** Sizes the terminal as the recording's output implies. */
  fit() {
    const { cols, rows } = this.recording.size;
    if (this.terminal.cols !== cols || this.terminal.rows !== rows) this.terminal.resize(cols, rows);
  }

  /** Makes the terminal show the first `count` outputs. */
  showUntil(count) {
    if (count === this.drawn) return;
    if (count < this.drawn) {
      this.terminal.reset();
      this.drawn = 0;
    }
    const chunks = this.recording.outputs.slice(this.drawn, count).map((output) => output.shown);
    this.drawn = count;
    this.fit();
    this.terminal.write(joined(chunks));
  }

  /** Live: shows everything received so far. */
  follow() {
    this.showUntil(this.recording.outputs.length);
    this.position = this.recording.duration;
    this.onPosition(this.position, false);
  }

  /** Shows the session as it was at `time` seconds. */
  seek(time) {
    this.position = Math.min(Math.max(0, time), this.recording.duration);
    this.showUntil(this.recording.outputsUntil(this.position));
    if (this.playing) this.started = { wall: performance.now(), position: this.position };
    this.onPosition(this.position, this.playing);
  }

  /** Plays from the current position (from the start when at the end). */
  play() {
    if (this.playing) return;
    if (this.position >= this.recording.duration) this.seek(0);
    this.started = { wall: performance.now(), position: this.position };
    this.timer = setInterval(() => this.frame(), FRAME_MS);
    this.onPosition(this.position, true);
  }

  pause() {
    if (!this.playing) return;
    clearInterval(this.timer);
    this.timer = null;
    this.onPosition(this.position, false);
  }

  /** Changes the speed (1 = as it happened) without a jump. */
  setSpeed(speed) {
    if (this.playing) this.started = { wall: performance.now(), position: this.position };
    this.speed = speed;
  }

  frame() {
    const time = this.started.position + ((performance.now() - this.started.wall) / 1000) * this.speed;
    this.seek(time);
    if (this.position >= this.recording.duration) this.pause();
  }
}
