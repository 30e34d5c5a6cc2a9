/**
 * The browser's own verifier of debug-me sessions (protocol 1): a port of the Rust verifier
 * (crates/debugme/src/{hash,sign,recover,verify}.rs and the warnings of
 * crates/debugme-tools/src/report.rs) that gives the same verdicts, failing lines, messages,
 * warnings and keys as `kanava verify --json`. It runs unchanged in a page, a Web Worker and
 * Node ≥ 18; openpgp.js is imported only when a GnuPG-signed key is checked.
 *
 * The pages use only this module's exports.
 * @module
 */

import { Failure, Verifier } from './verify.js';
import { JsonError, decodeLine, encodeLine } from './json.js';
import { WireError, decodeMessage } from './wire.js';
import { verdictJson } from './report.js';
import * as hash from './hash.js';
import { checkGpg } from './gpg.js';

export { decodeLine, encodeLine, JsonError } from './json.js';
export { decodeMessage, encodeMessage, WireError } from './wire.js';
export { hex } from './model.js';

/**
 * @typedef {object} Event
 * What one pushed line or message was, and whether it is trusted.
 * @property {number} index 1-based number of the line (log) or message (wire) in the session
 * @property {'seen' | 'entered' | 'control' | 'invalid'} kind `'invalid'` for a line or message
 *   that does not decode (its `message` is null; the verdict says why)
 * @property {import('./model.js').Message | null} message the decoded message (see model.js)
 * @property {'user' | 'developer' | null} side who sent it (Seen and the user's controls are
 *   the user's)
 * @property {boolean} trusted false for the message that failed and everything after the
 *   first failure
 */

/**
 * @typedef {object} Verdict
 * The shape of `kanava verify --json` without `path`: when verified, `{ verified: true, lines,
 * activities, controls, signature_checks, keys: [{ activities_signed, line, role, key,
 * gpg_signer, accepted_at, rejected_at }], warnings }`, else `{ verified: false, line, error,
 * signature_checks }`. `state()` adds `final`.
 */

/**
 * @callback ChainObserver
 * Told of each activity the verifier accepts into the chain, so that a page can draw the chain
 * of a log without pointers (the server's) as the signatures recovered it.
 * @param {number} line the activity's line (or message) number
 * @param {import('./model.js').Hash} chainHash its hash in the chain
 * @param {Array<import('./model.js').Hash | null>} pointers `[prevActivity, prevEntered]` it was
 *   signed with: written in the log, or recovered
 */

const WHITESPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;

/** Whether a log line is blank as Rust's `str::trim` sees it (skipped, but counted). */
function blank(text) {
  return WHITESPACE.test(text);
}

function kindOf(message) {
  return message.type === 'Seen' ? 'seen' : message.type === 'Entered' ? 'entered' : 'control';
}

/** Adapts a `gpg(control) => ({ signer })` checker to the verifier's call. */
function gpgAdapter(gpg) {
  return async (control) => (await gpg(control)).signer;
}

/** Verifies one session, message by message, as the Rust verifier does a whole log. */
export class SessionVerifier {
  /**
   * @param {{ gpg?: (control: import('./model.js').Control) => Promise<{ signer: string }>,
   *   onChain?: ChainObserver }} options
   *   gpg checks a GpgSigned developer key (throws Error(reason) when it does not hold);
   *   default: checkGpg from ./gpg.js, which import()s openpgp only when called. onChain is
   *   told of each activity accepted into the chain.
   */
  constructor({ gpg = checkGpg, onChain = null } = {}) {
    /** The verifier's state (internal: verifyLogText reads it). */
    this.verifier = new Verifier(gpgAdapter(gpg), onChain);
    /** Lines or messages pushed so far, blank lines included (internal). */
    this.index = 0;
    /** 'line' for a log, 'message' for the wire: how the verdict names the failing unit. */
    this.unit = 'line';
    this.finished = false;
    /** Pushes run one after another, in the order they were made, even when not awaited. */
    this.queue = Promise.resolve();
  }

  /** Runs `step` after every push made before it. */
  #enqueue(step) {
    const run = this.queue.then(step);
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * One line of a JSON log file (without its newline). A blank line is counted but skipped:
   * it gives null. Pushes need not be awaited one by one: they are verified in order.
   * @param {string} text
   * @returns {Promise<Event | null>}
   */
  pushLogLine(text) {
    return this.#enqueue(() => this.#pushLine(text));
  }

  async #pushLine(text) {
    const index = ++this.index;
    if (blank(text)) return null;
    const verifier = this.verifier;
    verifier.report.lines++;
    let decoded = null;
    let parseError = null;
    try {
      decoded = decodeLine(text);
    } catch (error) {
      if (!(error instanceof JsonError)) throw error;
      parseError = error;
    }
    if (verifier.failure !== null) {
      verifier.lookAhead(index, decoded);
      return this.#event(index, decoded?.message ?? null, false);
    }
    if (parseError !== null) {
      verifier.fail(new Failure(index, 'parse', { error: parseError.message }));
      return this.#event(index, null, false);
    }
    const trusted = await verifier.push(index, decoded.message, decoded.hash);
    return this.#event(index, decoded.message, trusted);
  }

  /**
   * The protobuf bytes of one `L` frame (the tag byte already removed): the wire form, which
   * has no pointers (recovered as for the server's log flavour). A verdict on the wire names
   * the failing message: `message N: reason`.
   * @param {Uint8Array | ArrayBuffer} bytes
   * @returns {Promise<Event>}
   */
  pushWire(bytes) {
    return this.#enqueue(() => this.#pushFrame(bytes));
  }

  async #pushFrame(bytes) {
    this.unit = 'message';
    const index = ++this.index;
    const verifier = this.verifier;
    verifier.report.lines++;
    let message = null;
    try {
      message = decodeMessage(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      if (verifier.failure === null) {
        verifier.fail(new Failure(index, 'wire', { error: `failed to decode the message: ${error.message}` }));
      }
      return this.#event(index, null, false);
    }
    if (verifier.failure !== null) return this.#event(index, message, false);
    const trusted = await verifier.push(index, message, null);
    return this.#event(index, message, trusted);
  }

  #event(index, message, trusted) {
    return {
      index,
      kind: message === null ? 'invalid' : kindOf(message),
      message,
      side: message?.side ?? null,
      trusted,
    };
  }

  /** The verdict so far, with `final` true once finish() was called. @returns {Verdict} */
  state() {
    return { ...this.#verdict(), final: this.finished };
  }

  #verdict() {
    const { failure, report, signatureChecks } = this.verifier;
    const rejection = failure === null
      ? null
      : { line: failure.line, error: `${this.unit} ${failure.line}: ${failure.reason()}` };
    return verdictJson(report, rejection, signatureChecks);
  }

  /**
   * Ends the input (after the pushes already made); the verdict, exactly the shape of
   * `kanava verify --json` minus `path`.
   */
  finish() {
    return this.#enqueue(() => {
      this.finished = true;
      return this.#verdict();
    });
  }
}

/**
 * The lines of a text as Rust's `str::lines` gives them: split on `\n`, and a `\r` before the
 * `\n` dropped (a last line without `\n` keeps its `\r`).
 */
function lines(text) {
  const parts = text.split('\n');
  const last = parts.pop();
  const out = parts.map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
  if (last !== '') out.push(last);
  return out;
}

/**
 * Verifies a whole log file's text (what the worker and the CLI use), in time linear in its
 * length. @returns {Promise<Verdict>}
 */
export async function verifyLogText(text, { gpg, onChain } = {}) {
  const session = new SessionVerifier({ ...(gpg === undefined ? {} : { gpg }), onChain });
  for (const line of lines(text)) {
    const verifier = session.verifier;
    // After a failure only a pending forward pointer still reads the lines that follow.
    if (verifier.failure !== null && verifier.pendingChain === null) {
      session.index++;
      continue;
    }
    await session.pushLogLine(line);
  }
  return session.finish();
}

/** How many leading bytes are valid UTF-8 (Rust's `Utf8Error::valid_up_to`). */
function validUpTo(bytes) {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let need;
    let min;
    if (b >= 0xc2 && b <= 0xdf) { need = 1; min = 0x80; } else if (b >= 0xe0 && b <= 0xef) { need = 2; min = 0x800; } else if (b >= 0xf0 && b <= 0xf4) { need = 3; min = 0x10000; } else return i;
    let cp = b & (0x3f >> need);
    for (let j = 1; j <= need; j++) {
      const c = bytes[i + j];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return i;
}

/**
 * Verifies a log file's bytes (a Uint8Array or an ArrayBuffer, e.g. `await file.arrayBuffer()`)
 * as `kanava verify` reads a file: a byte order mark is kept (it is not JSON), and invalid
 * UTF-8 is the verdict (at its line) only when the whole lines before it verify. Prefer it to
 * `verifyLogText(await file.text())`, which drops a BOM and replaces invalid UTF-8.
 * @returns {Promise<Verdict>}
 */
export async function verifyLogBytes(data, { gpg, onChain } = {}) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const valid = validUpTo(bytes);
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  if (valid === bytes.length) return verifyLogText(decoder.decode(bytes), { gpg, onChain });
  let line = 1;
  let lastNewline = -1;
  for (let i = 0; i < valid; i++) {
    if (bytes[i] === 0x0a) {
      line++;
      lastNewline = i;
    }
  }
  const verdict = await verifyLogText(decoder.decode(bytes.subarray(0, lastNewline + 1)), { gpg, onChain });
  if (!verdict.verified) return verdict;
  return {
    verified: false,
    line,
    error: `line ${line}: failed to parse a line of the log: invalid UTF-8`,
    signature_checks: verdict.signature_checks,
  };
}

/**
 * The server-flavour JSON log line for a wire message (so a page can offer the session's log
 * for download, and `kanava verify` / `debug-me --verify` accept it): the message as on the
 * wire, with for an activity the hash of that form as `loggedHash`.
 * @param {import('./model.js').Message} message
 * @param {number} loggedTimestampSeconds
 * @returns {string} the line, without its newline
 */
export function logLine(message, loggedTimestampSeconds) {
  const logged = message.type === 'Control' ? null : hash.activity(message);
  return encodeLine({ message, hash: logged, timestamp: loggedTimestampSeconds });
}
