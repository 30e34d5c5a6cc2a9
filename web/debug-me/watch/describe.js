// Words for what the page shows: the verifier's state as one status line, a control message
// as an event line, times as people read them. Text from the session (chat, names, GnuPG user
// ids) is sanitised here and always put into the page as text.

import { shownText } from '../../src/text.js';

const decoder = new TextDecoder('utf-8');
const numbers = new Intl.NumberFormat('en');

/** Bytes or a string from the session as safe text on one line, cut when very long. */
export function shown(value) {
  const text = value instanceof Uint8Array ? decoder.decode(value) : String(value ?? '');
  return shownText(text).replace(/\n/g, ' ');
}

/** The start of a key's hex, as people compare keys: `2955…`. */
export function shortKey(hex) {
  return `${String(hex ?? '').slice(0, 4)}…`;
}

/** A session time: `1:02.3`. */
export function clock(seconds) {
  const total = Math.max(0, seconds);
  const minutes = Math.floor(total / 60);
  const rest = (total - minutes * 60).toFixed(1).padStart(4, '0');
  return `${minutes}:${rest}`;
}

/** A developer's key as the status names it: its GnuPG signer and fingerprint (when the page
 *  checked one), or that it has none. */
function developer(key, fingerprints) {
  if (!key.gpg_signer) return `developer key ${shortKey(key.key)} (no verified GnuPG signature)`;
  const fingerprint = fingerprints.get(key.key);
  const gnupg = fingerprint ? `GnuPG ${shortKey(fingerprint)}` : 'GnuPG';
  return `developer ${shown(key.gpg_signer)} (${gnupg}, session key ${shortKey(key.key)})`;
}

/** The status line of a verdict (`SessionVerifier.state()` or `finish()`); `fingerprints`
 *  maps developer keys (hex) to the GnuPG fingerprints that signed them. */
export function statusText(verdict, fingerprints = new Map()) {
  if (!verdict.verified) {
    // The verifier's reason starts with the unit it failed at ("message N: …").
    const reason = String(verdict.error).replace(/^(message|line) \d+: /, '');
    return `failed at message ${numbers.format(verdict.line)}: ${shown(reason)}`;
  }
  const parts = [`verified: ${numbers.format(verdict.lines)} messages`, 'chain intact'];
  for (const key of verdict.keys ?? []) {
    parts.push(key.role === 'user' ? `user key ${shortKey(key.key)}` : developer(key, fingerprints));
  }
  return parts.join(', ');
}

/** The verdict's key entry for key `hex`, if any. */
function keyInfo(verdict, hex) {
  return (verdict.keys ?? []).find((key) => key.key === hex);
}

/**
 * The event line of a control message (`message` as the verifier decoded it, a Control of
 * web/debug-me/verifier/model.js; `side` who sent it), checked against `verdict`'s keys.
 */
export function controlText(message, side, verdict) {
  const who = side === 'user' ? 'user' : 'developer';
  const action = message.control;
  switch (action.tag) {
    case 'SessionKey': {
      const hex = action.key.keyHex;
      if (side === 'user') return `user's session key ${shortKey(hex)}`;
      const info = keyInfo(verdict, hex);
      if (info?.gpg_signer) return `developer's session key ${shortKey(hex)}, GnuPG-signed by ${shown(info.gpg_signer)}`;
      if (action.key.gpgSigned) return `developer's session key ${shortKey(hex)}, with a GnuPG signature that did not verify`;
      return `developer's session key ${shortKey(hex)}, not GnuPG-signed`;
    }
    case 'SessionKeyAccepted':
      return `${who} accepted developer key ${shortKey(action.keyHex)}: it may type`;
    case 'SessionKeyRejected':
      return `${who} refused developer key ${shortKey(action.keyHex)}`;
    case 'EnteredRejected':
      return `${who} rejected input that did not follow the terminal`;
    case 'ChatMessage':
      return `chat ${shown(action.sender)}: ${shown(action.text)}`;
    default:
      return `${who}: ${shown(action.tag)}`;
  }
}
