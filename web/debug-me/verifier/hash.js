/**
 * debug-me's structural hashing (spec §4; crates/debugme/src/hash.rs): every value hashes to
 * the 128 lowercase hex characters of a SHA-512, and composites hash those hex strings, tagged
 * with the constructor's name. The chain hash of an activity, and the bytes each signature
 * covers, are built from these. All hashes are `Uint8Array`s of hex text.
 * @module
 */

import { sha512Hex } from './sha512.js';

const encoder = new TextEncoder();

/** `H(bytes)`: the lowercase hex of SHA-512. */
export function h(bytes) {
  return sha512Hex([bytes]);
}

/** `L(h1, …, hn)`: the hash of the concatenation. */
export function l(parts) {
  return sha512Hex(parts);
}

const tagHashes = new Map();

/** `T(tag, h)`: `H(H(tag) ‖ h)`. */
export function t(tag, inner) {
  let tagged = tagHashes.get(tag);
  if (tagged === undefined) {
    tagged = h(encoder.encode(tag));
    tagHashes.set(tag, tagged);
  }
  return sha512Hex([tagged, inner]);
}

const EMPTY = h(new Uint8Array(0));

/** `U(maybe h)`: the hash value if present, else `H("")` (debug-me's `hashOfMaybeUnsafe`). */
export function u(maybe) {
  return maybe === null ? EMPTY : maybe.value;
}

/**
 * Haskell's `show` of a Double (spec §4.2), which the elapsed time is hashed through:
 * `0.1`, `12.0`, `1.0e7`, `5.0e-2`, `7.21099e-4`, `NaN`, `Infinity`, `-0.0`.
 * @param {number} x
 */
export function show(x) {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (x < 0 || Object.is(x, -0)) return `-${show(-x)}`;
  if (x === 0) return '0.0';
  const [mantissa, exponent] = x.toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const e = Number(exponent) + 1;
  if (e >= 0 && e <= 7) {
    let whole;
    if (e === 0) whole = '0';
    else if (digits.length >= e) whole = digits.slice(0, e);
    else whole = digits.padEnd(e, '0');
    const rest = digits.slice(e) || '0';
    return `${whole}.${rest}`;
  }
  return `${digits[0]}.${digits.length > 1 ? digits.slice(1) : '0'}e${e - 1}`;
}

/** The hash of a signature. */
export function signature(sig) {
  return t(sig.kind === 'Ed25519' ? 'Ed25519Signature' : 'OtherSignature', h(sig.bytes));
}

/** The hash of a raw public key (what a GnuPG statement states). */
export function publicKey(key) {
  return t('PublicKey', h(key));
}

function perhapsSigned(key) {
  if (key.tag === 'UnSigned') return t('UnSigned', publicKey(key.key));
  return t('GpgSigned', l([
    publicKey(key.key),
    t('GpgSig', h(key.statement)),
    t('GpgKeyExport', h(key.export)),
  ]));
}

/** The hash of a control action. */
export function controlAction(action) {
  switch (action.tag) {
    case 'EnteredRejected':
      return t('EnteredRejected', l([action.enteredRejected.value, u(action.enteredLastAccepted)]));
    case 'SessionKey':
      return t('SessionKey', l([perhapsSigned(action.key), h(action.version)]));
    case 'SessionKeyAccepted': return t('SessionKeyAccepted', publicKey(action.key));
    case 'SessionKeyRejected': return t('SessionKeyRejected', publicKey(action.key));
    default: return t('ChatMessage', l([h(action.sender), h(action.text)]));
  }
}

/** What a control's signature covers: `T("Control", hash(action))`. */
export function controlSigned(control) {
  return t('Control', controlAction(control.control));
}

/** An activity's own hash (a Seen's or an Entered's). */
export function activityContent(msg) {
  if (msg.type === 'Seen') return t('Seen', l([h(msg.output)]));
  return t('Entered', l([h(msg.input), h(msg.echo)]));
}

/** The hash of an elapsed time. */
export function elapsedTime(seconds) {
  return t('ElapsedTime', h(encoder.encode(show(seconds))));
}

/** What an activity's signature covers, with the pointers it holds. */
export function activitySigned(msg) {
  return t('Activity', l([
    activityContent(msg), u(msg.prevActivity), u(msg.prevEntered), elapsedTime(msg.elapsedTime),
  ]));
}

/** The chain hash of an activity with the pointers it holds (`loggedHash`), as a Hash. */
export function activity(msg) {
  return {
    method: 'SHA512',
    value: t('Activity', l([
      activityContent(msg), u(msg.prevActivity), u(msg.prevEntered), elapsedTime(msg.elapsedTime),
      signature(msg.signature),
    ])),
  };
}
