// The page as a debug-me watcher (protocol 1, spec §7.1) over a WebSocket to the server's
// /debug-me path on the page's own origin: it sends its version and ConnectMode with the
// session's URL, then receives the session id (R), every message so far and then live ones
// (L), and Done (D) when the session has ended, or an error (E). A watcher never sends L.

/** The protocol versions the page speaks. */
const VERSIONS = ['1'];

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8');

/** A frame: its ASCII tag, then the payload. */
export function encodeFrame(tag, payload) {
  const body = typeof payload === 'string' ? encoder.encode(payload) : payload;
  const bytes = new Uint8Array(1 + body.length);
  bytes[0] = tag.charCodeAt(0);
  bytes.set(body, 1);
  return bytes;
}

/** A frame received: `{tag, payload}` with V, R and E's JSON decoded and L's bytes as they are. */
export function decodeFrame(bytes) {
  if (bytes.length === 0) throw new Error('an empty frame');
  const tag = String.fromCharCode(bytes[0]);
  const payload = bytes.subarray(1);
  switch (tag) {
    case 'L':
      return { tag, payload };
    case 'D':
      return { tag, payload: null };
    case 'V':
    case 'R':
    case 'E':
      return { tag, payload: JSON.parse(decoder.decode(payload)) };
    default:
      throw new Error(`an unknown frame ${JSON.stringify(tag)}`);
  }
}

/** The session id in the page's path (`/debug-me/SESSION`), or null. */
export function sessionIdOf(pathname) {
  const match = /^\/debug-me\/([0-9a-fA-F-]{36})\/?$/.exec(pathname);
  return match ? match[1] : null;
}

/**
 * Watches session `id` on the page's origin (`location`). Calls `onSession(id)` once the
 * server knows it, `onMessage(bytes)` for each L frame's protobuf, in order, `onDone()` when
 * the session has ended, and `onEnd(reason)` once the connection is over (reason null after
 * Done). Returns the WebSocket.
 */
export function watch(location, id, { onSession, onMessage, onDone, onEnd }) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(`${scheme}//${location.host}/debug-me/${id}`);
  socket.binaryType = 'arraybuffer';
  let done = false;
  let reason = null;
  socket.addEventListener('open', () => {
    socket.send(encodeFrame('V', JSON.stringify(VERSIONS)));
    const url = `${location.protocol}//${location.host}/debug-me/${id}`;
    socket.send(encodeFrame('M', JSON.stringify({ tag: 'ConnectMode', contents: url })));
  });
  socket.addEventListener('message', (event) => {
    if (!(event.data instanceof ArrayBuffer)) return;
    let frame;
    try {
      frame = decodeFrame(new Uint8Array(event.data));
    } catch (error) {
      reason = `the server sent ${error.message}`;
      socket.close();
      return;
    }
    if (frame.tag === 'V' && !(Array.isArray(frame.payload) && frame.payload.includes('1'))) {
      reason = 'the server does not speak debug-me protocol 1';
      socket.close();
    } else if (frame.tag === 'R') onSession(String(frame.payload));
    else if (frame.tag === 'L') onMessage(frame.payload);
    else if (frame.tag === 'D') {
      done = true;
      onDone();
    } else if (frame.tag === 'E') reason = String(frame.payload);
  });
  socket.addEventListener('close', () => {
    onEnd(done ? null : reason ?? 'the connection to the server was lost');
  });
  return socket;
}
