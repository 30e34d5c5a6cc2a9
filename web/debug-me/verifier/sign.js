/**
 * Ed25519 signatures over exactly the bytes protocol 1 names (the 128 hex characters of an
 * activity's or a control's signed hash, no prehash), checked with WebCrypto's Ed25519
 * (crates/debugme/src/sign.rs). As ed25519-dalek's `verify_strict` does, a key or a signature
 * `R` of small order never verifies; other signature kinds and malformed keys never verify.
 * @module
 */

/** The module Node (≥ 18, where the global may be missing) has WebCrypto in. */
const nodeCrypto = 'node:crypto';

/** WebCrypto: the page's or the worker's, or Node's; null where there is none. */
async function findSubtle() {
  if (globalThis.crypto?.subtle) return globalThis.crypto.subtle;
  if (globalThis.process?.versions?.node) return (await import(nodeCrypto)).webcrypto.subtle;
  return null;
}

const subtle = await findSubtle();

/**
 * The encodings of the points of small order, without the sign bit (libsodium's blocklist,
 * non-canonical forms included): dalek's `verify_strict` refuses them as keys and as `R`.
 */
const SMALL_ORDER = [
  '0100000000000000000000000000000000000000000000000000000000000000',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map((hex) => Uint8Array.from(hex.match(/../g), (b) => parseInt(b, 16)));

function smallOrder(point) {
  return SMALL_ORDER.some((bad) => {
    for (let i = 0; i < 31; i++) if (point[i] !== bad[i]) return false;
    return (point[31] & 0x7f) === bad[31];
  });
}

/** Imported WebCrypto keys by their raw bytes, at most MAX_KEYS. */
const keys = new Map();
const MAX_KEYS = 4096;

/** A valid key (appendix A's user key): whether WebCrypto has Ed25519 at all. */
const PROBE = Uint8Array.from(atob('zrnuBvzv3mJ8Cay8nXjc3vRfv/jVtJATSaHjAg53gxo='), (c) => c.charCodeAt(0));
let supported = null;

/** Throws when WebCrypto has no Ed25519, rather than calling every signature bad. */
async function assertSupported() {
  supported ??= subtle.importKey('raw', PROBE, { name: 'Ed25519' }, false, ['verify']).then(() => true, () => false);
  if (!(await supported)) {
    throw new Error('this browser\'s WebCrypto has no Ed25519: it cannot check debug-me signatures');
  }
}

function importKey(key) {
  let text = '';
  for (const byte of key) text += String.fromCharCode(byte);
  let imported = keys.get(text);
  if (imported === undefined) {
    // Keys are kept across logs (a worker verifies many); a log of crafted keys cannot make
    // the cache grow without end.
    if (keys.size >= MAX_KEYS) keys.clear();
    imported = subtle.importKey('raw', key, { name: 'Ed25519' }, false, ['verify']).catch(() => null);
    keys.set(text, imported);
  }
  return imported;
}

/**
 * Whether `sig` is an Ed25519 signature of `bytes` by the raw 32-byte `key`.
 * @param {Uint8Array} key
 * @param {Uint8Array} bytes
 * @param {import('./model.js').Signature} sig
 * @returns {Promise<boolean>}
 */
export async function verifies(key, bytes, sig) {
  if (subtle === null) {
    // Browsers give WebCrypto only to secure contexts.
    throw new Error('WebCrypto is not available here: the page must be served over HTTPS (or from localhost) to check signatures');
  }
  if (sig.kind !== 'Ed25519' || sig.bytes.length !== 64 || key.length !== 32) return false;
  if (smallOrder(key) || smallOrder(sig.bytes.subarray(0, 32))) return false;
  const cryptoKey = await importKey(key);
  if (cryptoKey === null) {
    await assertSupported();
    return false;
  }
  try {
    return await subtle.verify({ name: 'Ed25519' }, cryptoKey, sig.bytes, bytes);
  } catch {
    return false;
  }
}
