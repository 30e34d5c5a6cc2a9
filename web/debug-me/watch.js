// The watch page of a debug-me session (/debug-me/SESSION): the page joins the session as a
// watcher, verifies every message itself as it arrives (web/debug-me/verifier, never the
// server's word), draws the user's terminal with xterm.js and lists the session's control
// events; a finished session becomes a replay, and the session can be downloaded as the log
// the page verified and as an asciicast.

import '@xterm/xterm/css/xterm.css';
import './watch/watch.css';
import { Terminal } from '@xterm/xterm';
import { SessionVerifier, logLine } from './verifier/index.js';
import { checkGpg } from './verifier/gpg.js';
import { asciicast } from './watch/asciicast.js';
import { sessionIdOf, watch } from './watch/connection.js';
import { clock, controlText, statusText } from './watch/describe.js';
import { Player } from './watch/player.js';
import { Recording } from './watch/recording.js';
import { adoptXtermStyles } from './watch/styles.js';

/** The server sends the log so far in one burst; after a pause this long (ms) between
 *  messages, what comes is live (protocol 1 does not mark where the replay ends). */
const BACKLOG_QUIET_MS = 250;

const $ = (id) => document.getElementById(id);
const status = $('verification');
const state = $('session-state');
const events = $('events');
const timeline = $('timeline');
const playButton = $('play');

adoptXtermStyles(document);
const terminal = new Terminal({
  screenReaderMode: true,
  disableStdin: true,
  cursorBlink: false,
  scrollback: 10000,
  cols: 80,
  rows: 24,
});
terminal.open($('terminal'));

const id = sessionIdOf(location.pathname);
const recording = new Recording();
/** The GnuPG fingerprint that signed each developer key (by the key's hex), for the status. */
const fingerprints = new Map();
const verifier = new SessionVerifier({
  gpg: async (control) => {
    const checked = await checkGpg(control);
    fingerprints.set(control.control.key.keyHex, checked.fingerprint);
    return checked;
  },
});
const player = new Player(terminal, recording, showPosition);
let verdict = verifier.state();
let finished = false;
/** When the session id or the last message arrived (ms), and whether messages now arrive as
 *  they happen rather than as the replay of the log so far. */
let lastArrival = 0;
let live = false;
let firstFailure = null;

function showPosition(position, playing) {
  timeline.max = String(Math.round(recording.duration * 1000));
  timeline.value = String(Math.round(position * 1000));
  $('clock').textContent = `${clock(position)} / ${clock(recording.duration)}`;
  playButton.textContent = playing ? 'Pause' : 'Play';
  // In a replay, the events still to come are dimmed.
  for (const item of events.children) item.classList.toggle('later', Number(item.dataset.time) > position);
}

function showVerdict() {
  status.textContent = statusText(verdict, fingerprints);
  status.classList.toggle('failed', !verdict.verified);
  if (!verdict.verified && firstFailure === null) {
    firstFailure = verdict.line;
    const note = $('untrusted');
    note.textContent = `Everything from message ${verdict.line} on failed verification or follows a failure: it is shown, but it may be forged.`;
    note.hidden = false;
    $('terminal-pane').classList.add('untrusted');
  }
}

/** Shows the verdict and the terminal as they are now, once per frame however many messages
 *  arrived in it (the log so far comes in one burst). */
let renderPending = false;
function render() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    showVerdict();
    if (!finished) player.follow();
    $('terminal-size').textContent = `${terminal.cols}×${terminal.rows}`;
  });
}

/** Adds an entry to the event list, when it is one the list shows. */
function listEntry(entry) {
  let text = null;
  if (entry.kind === 'control') text = controlText(entry.message, entry.side, verdict);
  if (text === null) return;
  const item = document.createElement('li');
  item.dataset.side = entry.side;
  item.dataset.time = String(entry.time);
  if (!entry.trusted) item.classList.add('untrusted');
  const time = document.createElement('time');
  time.className = 'elapsed';
  time.textContent = clock(entry.time);
  item.append(time);
  if (entry.arrived) {
    const arrived = document.createElement('time');
    arrived.className = 'arrived';
    arrived.dateTime = entry.arrived.toISOString();
    arrived.textContent = entry.arrived.toLocaleTimeString('en-GB');
    item.append(' ', arrived);
  }
  const what = document.createElement('span');
  what.className = 'what';
  what.textContent = entry.trusted ? text : `${text} (untrusted)`;
  item.append(' ', what);
  events.append(item);
}

/** Verifies and shows one message, which arrived at `now` (ms since the epoch). */
async function received(bytes, now) {
  if (!finished && now - lastArrival > BACKLOG_QUIET_MS) live = true;
  lastArrival = now;
  let event;
  try {
    event = await verifier.pushWire(bytes);
  } catch (error) {
    status.textContent = `failed: ${error.message}`;
    status.classList.add('failed');
    return;
  }
  verdict = verifier.state();
  // A message that does not decode has no content to show; the verdict says why.
  if (event.message !== null) listEntry(recording.add(event, now, live));
  render();
}

async function ended() {
  finished = true;
  verdict = await verifier.finish();
  showVerdict();
  state.textContent = `Finished session ${id}: replay`;
  for (const control of document.querySelectorAll('#replay [disabled]')) control.disabled = false;
  player.follow();
  $('terminal-size').textContent = `${terminal.cols}×${terminal.rows}`;
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

playButton.addEventListener('click', () => (player.playing ? player.pause() : player.play()));
$('speed').addEventListener('change', (event) => player.setSpeed(Number(event.target.value)));
// Dragging the timeline fires many inputs; the terminal is redrawn once per frame at most.
let seekPending = false;
timeline.addEventListener('input', () => {
  if (seekPending) return;
  seekPending = true;
  requestAnimationFrame(() => {
    seekPending = false;
    player.seek(Number(timeline.value) / 1000);
  });
});
$('download-log').addEventListener('click', () => {
  const lines = recording.entries.map((entry) => `${logLine(entry.message, entry.logged)}\n`);
  download(`debug-me.${id}.log`, 'text/plain', lines.join(''));
});
$('download-cast').addEventListener('click', () => {
  const size = { cols: recording.size.cols, rows: recording.size.rows };
  download(`debug-me.${id}.cast`, 'application/x-asciicast', asciicast(recording.outputs, size, recording.firstArrival));
});

if (id === null) {
  status.textContent = 'This is not a session address: /debug-me/ is followed by a session id.';
} else {
  let queue = Promise.resolve();
  state.textContent = `Session ${id}: connecting…`;
  watch(location, id, {
    onSession: () => {
      lastArrival = Date.now();
      state.textContent = `Live session ${id}`;
      status.textContent = 'verified: 0 messages so far';
    },
    onMessage: (bytes) => {
      const copy = bytes.slice();
      const now = Date.now();
      queue = queue.then(() => received(copy, now));
    },
    onDone: () => {
      queue = queue.then(ended);
    },
    onEnd: (reason) => {
      queue = queue.then(() => {
        if (reason === null) return;
        state.textContent = `Session ${id}: ${reason}`;
        if (recording.entries.length === 0) status.textContent = `nothing to verify: ${reason}`;
      });
    },
  });
}
