/**
 * debug-me's data model (protocol 1), as the verifier and the pages see it: what a session
 * log line and a wire message hold. It mirrors crates/debugme/src/model.rs; constructor names
 * are protocol 1's, because the hashes are over those names.
 *
 * Bytes are `Uint8Array`s. A hash value is 128 lowercase hex ASCII bytes when it is sound (the
 * JSON log may hold any bytes there; the wire refuses anything else).
 * @module
 */

import { toHex } from './sha512.js';

/**
 * @typedef {{ method: 'SHA512' | 'SHA3', value: Uint8Array }} Hash
 * A hash: the method, and its value as hex text bytes.
 */

/**
 * @typedef {{ kind: 'Ed25519' | 'Other', bytes: Uint8Array }} Signature
 * A signature: Ed25519's 64 bytes, or another kind (which never verifies).
 */

/**
 * @typedef {{ tag: 'UnSigned', key: Uint8Array, keyHex: string, gpgSigned: false }
 *         | { tag: 'GpgSigned', key: Uint8Array, keyHex: string, gpgSigned: true,
 *             statement: Uint8Array, export: Uint8Array }} PerhapsSigned
 * A session key (raw 32-byte Ed25519), perhaps bound to a GnuPG identity by a clearsigned
 * `statement` and an armoured key `export`.
 */

/**
 * @typedef {{ tag: 'EnteredRejected', enteredRejected: Hash, enteredLastAccepted: Hash | null }
 *         | { tag: 'SessionKey', key: PerhapsSigned, version: Uint8Array }
 *         | { tag: 'SessionKeyAccepted', key: Uint8Array, keyHex: string }
 *         | { tag: 'SessionKeyRejected', key: Uint8Array, keyHex: string }
 *         | { tag: 'ChatMessage', sender: Uint8Array, text: Uint8Array }} ControlAction
 * A control action: outside the hash chain, signed on its own.
 */

/**
 * @typedef {object} Seen
 * Terminal output the user's side saw: a link of the chain.
 * @property {'user'} side
 * @property {'Seen'} type
 * @property {Uint8Array} output the bytes read from the PTY (`seenData`)
 * @property {Hash | null} prevActivity absent on the wire
 * @property {Hash | null} prevEntered absent on the wire
 * @property {number} elapsedTime seconds since the previous activity, as the sender measured
 * @property {Signature} signature
 */

/**
 * @typedef {object} Entered
 * Keys a developer typed: a link of the chain.
 * @property {'developer'} side
 * @property {'Entered'} type
 * @property {Uint8Array} input the keys (`enteredData`)
 * @property {Uint8Array} echo output the developer expects echoed (`echoData`)
 * @property {Hash | null} prevActivity
 * @property {Hash | null} prevEntered
 * @property {number} elapsedTime
 * @property {Signature} signature
 */

/**
 * @typedef {object} Control
 * A signed control message of either side.
 * @property {'user' | 'developer'} side
 * @property {'Control'} type
 * @property {ControlAction} control
 * @property {Signature} signature
 */

/** @typedef {Seen | Entered | Control} Message  A message from either side. */

/**
 * @typedef {{ message: Message, hash: Hash | null, timestamp: number }} LogLine
 * One line of a session log: the message, the activity's chain hash as the writer computed it
 * (`loggedHash`, null for controls), and when it was logged (POSIX seconds, not hashed).
 */

/** A hash. @returns {Hash} */
export function hash(method, value) {
  return { method, value };
}

/** A signature. @returns {Signature} */
export function signature(kind, bytes) {
  return { kind, bytes };
}

/** An unsigned session key. @returns {PerhapsSigned} */
export function unsigned(key) {
  return { tag: 'UnSigned', key, keyHex: toHex(key), gpgSigned: false };
}

/** A GnuPG-signed session key. @returns {PerhapsSigned} */
export function gpgSigned(key, statement, exported) {
  return { tag: 'GpgSigned', key, keyHex: toHex(key), gpgSigned: true, statement, export: exported };
}

/** @returns {ControlAction} */
export function enteredRejected(rejected, lastAccepted) {
  return { tag: 'EnteredRejected', enteredRejected: rejected, enteredLastAccepted: lastAccepted };
}

/** @returns {ControlAction} */
export function sessionKey(key, version) {
  return { tag: 'SessionKey', key, version };
}

/** @returns {ControlAction} */
export function sessionKeyAccepted(key) {
  return { tag: 'SessionKeyAccepted', key, keyHex: toHex(key) };
}

/** @returns {ControlAction} */
export function sessionKeyRejected(key) {
  return { tag: 'SessionKeyRejected', key, keyHex: toHex(key) };
}

/** @returns {ControlAction} */
export function chatMessage(sender, text) {
  return { tag: 'ChatMessage', sender, text };
}

/** A Seen activity. @returns {Seen} */
export function seen(output, prevActivity, prevEntered, elapsedTime, sig) {
  return { side: 'user', type: 'Seen', output, prevActivity, prevEntered, elapsedTime, signature: sig };
}

/** An Entered activity. @returns {Entered} */
export function entered(input, echo, prevActivity, prevEntered, elapsedTime, sig) {
  return {
    side: 'developer', type: 'Entered', input, echo, prevActivity, prevEntered, elapsedTime,
    signature: sig,
  };
}

/** A control message of `side`. @returns {Control} */
export function control(side, action, sig) {
  return { side, type: 'Control', control: action, signature: sig };
}

/** Lowercase hex of bytes (a session key as `kanava verify` prints it). */
export { toHex as hex };

const latin1 = new TextDecoder('latin1');
const hashKeys = new WeakMap();

/** A string naming a hash, usable as a Map key (method and value). @param {Hash} h */
export function hashKey(h) {
  let key = hashKeys.get(h);
  if (key === undefined) {
    key = (h.method === 'SHA512' ? '5:' : '3:') + latin1.decode(h.value);
    hashKeys.set(h, key);
  }
  return key;
}

/** Whether two hashes (or nulls) are equal. */
export function sameHash(a, b) {
  if (a === null || b === null) return a === b;
  if (a.method !== b.method || a.value.length !== b.value.length) return false;
  for (let i = 0; i < a.value.length; i++) if (a.value[i] !== b.value[i]) return false;
  return true;
}
