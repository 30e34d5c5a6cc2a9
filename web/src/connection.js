// The WebSocket to the server (docs/web-protocol.md): log in with the browser's key, send
// requests and match their replies by id, and after a drop or a server restart connect and log
// in again by itself, with exponential backoff.

import { base64, loginMessage, sign } from "./sshsig.js";

/** First wait before reconnecting, in ms; it doubles up to BACKOFF_MAX. */
export const BACKOFF_FIRST = 500;
/** Longest wait before reconnecting, in ms. */
export const BACKOFF_MAX = 15_000;

/**
 * The wait before reconnect attempt `attempt` (0 for the first): 0.5 s doubling to 15 s, each
 * with up to a quarter taken off at random so that pages dropped together do not return together.
 */
export function backoff(attempt, random = Math.random) {
  const full = Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** Math.min(attempt, 16));
  return Math.round(full * (1 - random() * 0.25));
}

/** The close code of a refused login or another breach of policy. */
const CLOSE_POLICY = 1008;

/** A request the server refused: its `code` and `reason`. */
export class Refusal extends Error {
  constructor(code, reason) {
    super(reason);
    this.code = code;
  }
}

/**
 * One logged-in session that keeps itself connected. Callbacks: `onState(state, detail)` with
 * state `connecting`, `connected`, `waiting` (detail: ms until the next attempt) or `refused`;
 * `onWelcome(welcome, hello)` after each login; `onRefused(refused)` when the login is refused
 * (no more attempts); `onMessage(message)` for everything after the welcome.
 */
export class Connection {
  constructor({ url, name, identity, onState, onWelcome, onRefused, onMessage }) {
    Object.assign(this, { url, name, identity, onState, onWelcome, onRefused, onMessage });
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.nextId = 1;
    this.pending = new Map();
    this.welcomed = false;
    this.stopped = false;
    this.hello = null;
  }

  /** Connects now (also cutting a wait short, e.g. when the network comes back). */
  connect() {
    if (this.stopped || (this.socket && this.socket.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.welcomed = false;
    this.hello = null;
    this.onState("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onmessage = (e) => {
      if (this.socket === socket) this.received(e.data);
    };
    socket.onclose = (e) => {
      if (this.socket === socket) this.closed(e);
    };
  }

  /** Ends the session for good. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.socket?.close(1000);
    this.failPending("not connected");
  }

  /** Gives up on a connection that stopped answering, and connects again after the backoff. */
  abandon() {
    const socket = this.socket;
    if (!socket) return;
    this.closed({ code: 1006, reason: "the server stopped answering" });
    socket.close();
  }

  /** Whether requests can be sent now. */
  get ready() {
    return this.welcomed && this.socket?.readyState === WebSocket.OPEN;
  }

  /** Sends a request; resolves with the reply carrying its id, rejects with a Refusal. */
  request(message) {
    if (!this.ready) return Promise.reject(new Refusal("offline", "not connected; try again in a moment"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ ...message, id }));
    });
  }

  async received(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (!message || typeof message !== "object") return;
    if (!this.welcomed) {
      await this.handshake(message);
      return;
    }
    const waiting = Number.isSafeInteger(message.id) ? this.pending.get(message.id) : undefined;
    if (waiting && message.type !== "pm") {
      this.pending.delete(message.id);
      if (message.type === "error") waiting.reject(new Refusal(message.code, message.reason));
      else waiting.resolve(message);
    }
    this.onMessage(message);
  }

  async handshake(message) {
    const socket = this.socket;
    switch (message.type) {
      case "hello": {
        this.hello = message;
        const blob = await sign(this.identity, loginMessage(this.name, String(message.nonce ?? "")));
        if (this.socket !== socket || socket.readyState !== WebSocket.OPEN) return;
        socket.send(
          JSON.stringify({
            type: "login",
            name: this.name,
            key: this.identity.openSsh,
            signature: base64(blob),
          }),
        );
        break;
      }
      case "welcome":
        this.welcomed = true;
        this.attempt = 0;
        this.onWelcome(message, this.hello);
        this.onState("connected");
        break;
      case "refused":
        this.stopped = true;
        this.onState("refused");
        this.onRefused(message);
        break;
      default:
        break;
    }
  }

  closed(event) {
    const welcomed = this.welcomed;
    this.socket = null;
    this.welcomed = false;
    this.failPending("the connection was lost before the server answered (look before sending again)");
    if (this.stopped) return;
    if (!welcomed && event.code === CLOSE_POLICY && this.hello) {
      // Closed for policy before the welcome: the login was refused, even if the `refused`
      // message did not arrive first. Trying again would be refused again.
      this.stopped = true;
      this.onState("refused");
      const reason = event.reason || "the server refused the login";
      this.onRefused({ type: "refused", code: "refused", reason });
      return;
    }
    const delay = backoff(this.attempt);
    this.attempt += 1;
    this.onState("waiting", delay, event);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  failPending(reason) {
    for (const { reject } of this.pending.values()) reject(new Refusal("offline", reason));
    this.pending.clear();
  }
}
