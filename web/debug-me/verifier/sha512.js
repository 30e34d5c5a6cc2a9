/**
 * SHA-512, synchronous, in plain JavaScript.
 *
 * Protocol 1 hashes every field of every message, and the verifier tries several pointer
 * pairs per line, each a few hashes of short inputs. WebCrypto's digest is asynchronous (a
 * promise per hash costs more than the hash of 256 bytes), and `logLine` must be synchronous,
 * so the verifier hashes here; the node tests check this against WebCrypto's SHA-512.
 * @module
 */

const K = new Int32Array([
  0x428a2f98, 0xd728ae22, 0x71374491, 0x23ef65cd, 0xb5c0fbcf, 0xec4d3b2f, 0xe9b5dba5, 0x8189dbbc,
  0x3956c25b, 0xf348b538, 0x59f111f1, 0xb605d019, 0x923f82a4, 0xaf194f9b, 0xab1c5ed5, 0xda6d8118,
  0xd807aa98, 0xa3030242, 0x12835b01, 0x45706fbe, 0x243185be, 0x4ee4b28c, 0x550c7dc3, 0xd5ffb4e2,
  0x72be5d74, 0xf27b896f, 0x80deb1fe, 0x3b1696b1, 0x9bdc06a7, 0x25c71235, 0xc19bf174, 0xcf692694,
  0xe49b69c1, 0x9ef14ad2, 0xefbe4786, 0x384f25e3, 0x0fc19dc6, 0x8b8cd5b5, 0x240ca1cc, 0x77ac9c65,
  0x2de92c6f, 0x592b0275, 0x4a7484aa, 0x6ea6e483, 0x5cb0a9dc, 0xbd41fbd4, 0x76f988da, 0x831153b5,
  0x983e5152, 0xee66dfab, 0xa831c66d, 0x2db43210, 0xb00327c8, 0x98fb213f, 0xbf597fc7, 0xbeef0ee4,
  0xc6e00bf3, 0x3da88fc2, 0xd5a79147, 0x930aa725, 0x06ca6351, 0xe003826f, 0x14292967, 0x0a0e6e70,
  0x27b70a85, 0x46d22ffc, 0x2e1b2138, 0x5c26c926, 0x4d2c6dfc, 0x5ac42aed, 0x53380d13, 0x9d95b3df,
  0x650a7354, 0x8baf63de, 0x766a0abb, 0x3c77b2a8, 0x81c2c92e, 0x47edaee6, 0x92722c85, 0x1482353b,
  0xa2bfe8a1, 0x4cf10364, 0xa81a664b, 0xbc423001, 0xc24b8b70, 0xd0f89791, 0xc76c51a3, 0x0654be30,
  0xd192e819, 0xd6ef5218, 0xd6990624, 0x5565a910, 0xf40e3585, 0x5771202a, 0x106aa070, 0x32bbd1b8,
  0x19a4c116, 0xb8d2d0c8, 0x1e376c08, 0x5141ab53, 0x2748774c, 0xdf8eeb99, 0x34b0bcb5, 0xe19b48a8,
  0x391c0cb3, 0xc5c95a63, 0x4ed8aa4a, 0xe3418acb, 0x5b9cca4f, 0x7763e373, 0x682e6ff3, 0xd6b2b8a3,
  0x748f82ee, 0x5defb2fc, 0x78a5636f, 0x43172f60, 0x84c87814, 0xa1f0ab72, 0x8cc70208, 0x1a6439ec,
  0x90befffa, 0x23631e28, 0xa4506ceb, 0xde82bde9, 0xbef9a3f7, 0xb2c67915, 0xc67178f2, 0xe372532b,
  0xca273ece, 0xea26619c, 0xd186b8c7, 0x21c0c207, 0xeada7dd6, 0xcde0eb1e, 0xf57d4f7f, 0xee6ed178,
  0x06f067aa, 0x72176fba, 0x0a637dc5, 0xa2c898a6, 0x113f9804, 0xbef90dae, 0x1b710b35, 0x131c471b,
  0x28db77f5, 0x23047d84, 0x32caab7b, 0x40c72493, 0x3c9ebe0a, 0x15c9bebc, 0x431d67c4, 0x9c100d4c,
  0x4cc5d4be, 0xcb3e42b6, 0x597f299c, 0xfc657e2a, 0x5fcb6fab, 0x3ad6faec, 0x6c44198c, 0x4a475817,
]);

const INITIAL = [
  0x6a09e667, 0xf3bcc908, 0xbb67ae85, 0x84caa73b, 0x3c6ef372, 0xfe94f82b, 0xa54ff53a, 0x5f1d36f1,
  0x510e527f, 0xade682d1, 0x9b05688c, 0x2b3e6c1f, 0x1f83d9ab, 0xfb41bd6b, 0x5be0cd19, 0x137e2179,
];

const W = new Int32Array(160);

/** Runs the compression function over each 128-byte block of `bytes` from `offset`. */
function blocks(state, bytes, offset, end) {
  let [ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl] = state;
  for (let p = offset; p < end; p += 128) {
    for (let i = 0; i < 32; i++) {
      const j = p + i * 4;
      W[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
    }
    for (let i = 32; i < 160; i += 2) {
      // sigma0 of W[i-30], sigma1 of W[i-4]
      let xh = W[i - 30], xl = W[i - 29];
      const s0h = ((xh >>> 1) | (xl << 31)) ^ ((xh >>> 8) | (xl << 24)) ^ (xh >>> 7);
      const s0l = ((xl >>> 1) | (xh << 31)) ^ ((xl >>> 8) | (xh << 24)) ^ ((xl >>> 7) | (xh << 25));
      xh = W[i - 4]; xl = W[i - 3];
      const s1h = ((xh >>> 19) | (xl << 13)) ^ ((xl >>> 29) | (xh << 3)) ^ (xh >>> 6);
      const s1l = ((xl >>> 19) | (xh << 13)) ^ ((xh >>> 29) | (xl << 3)) ^ ((xl >>> 6) | (xh << 26));
      let lo = (s0l >>> 0) + (s1l >>> 0) + (W[i - 13] >>> 0) + (W[i - 31] >>> 0);
      let hi = s0h + s1h + W[i - 14] + W[i - 32] + ((lo / 0x100000000) | 0);
      W[i] = hi | 0;
      W[i + 1] = lo | 0;
    }
    let a1 = ah, a2 = al, b1 = bh, b2 = bl, c1 = ch, c2 = cl, d1 = dh, d2 = dl;
    let e1 = eh, e2 = el, f1 = fh, f2 = fl, g1 = gh, g2 = gl, h1 = hh, h2 = hl;
    for (let i = 0; i < 160; i += 2) {
      const S1h = ((e1 >>> 14) | (e2 << 18)) ^ ((e1 >>> 18) | (e2 << 14)) ^ ((e2 >>> 9) | (e1 << 23));
      const S1l = ((e2 >>> 14) | (e1 << 18)) ^ ((e2 >>> 18) | (e1 << 14)) ^ ((e1 >>> 9) | (e2 << 23));
      const chh = (e1 & f1) ^ (~e1 & g1);
      const chl = (e2 & f2) ^ (~e2 & g2);
      let lo = (h2 >>> 0) + (S1l >>> 0) + (chl >>> 0) + (K[i + 1] >>> 0) + (W[i + 1] >>> 0);
      const t1h = (h1 + S1h + chh + K[i] + W[i] + ((lo / 0x100000000) | 0)) | 0;
      const t1l = lo | 0;
      const S0h = ((a1 >>> 28) | (a2 << 4)) ^ ((a2 >>> 2) | (a1 << 30)) ^ ((a2 >>> 7) | (a1 << 25));
      const S0l = ((a2 >>> 28) | (a1 << 4)) ^ ((a1 >>> 2) | (a2 << 30)) ^ ((a1 >>> 7) | (a2 << 25));
      const majh = (a1 & b1) ^ (a1 & c1) ^ (b1 & c1);
      const majl = (a2 & b2) ^ (a2 & c2) ^ (b2 & c2);
      lo = (S0l >>> 0) + (majl >>> 0);
      const t2h = (S0h + majh + ((lo / 0x100000000) | 0)) | 0;
      const t2l = lo | 0;
      h1 = g1; h2 = g2; g1 = f1; g2 = f2; f1 = e1; f2 = e2;
      lo = (d2 >>> 0) + (t1l >>> 0);
      e1 = (d1 + t1h + ((lo / 0x100000000) | 0)) | 0; e2 = lo | 0;
      d1 = c1; d2 = c2; c1 = b1; c2 = b2; b1 = a1; b2 = a2;
      lo = (t1l >>> 0) + (t2l >>> 0);
      a1 = (t1h + t2h + ((lo / 0x100000000) | 0)) | 0; a2 = lo | 0;
    }
    let lo;
    lo = (al >>> 0) + (a2 >>> 0); ah = (ah + a1 + ((lo / 0x100000000) | 0)) | 0; al = lo | 0;
    lo = (bl >>> 0) + (b2 >>> 0); bh = (bh + b1 + ((lo / 0x100000000) | 0)) | 0; bl = lo | 0;
    lo = (cl >>> 0) + (c2 >>> 0); ch = (ch + c1 + ((lo / 0x100000000) | 0)) | 0; cl = lo | 0;
    lo = (dl >>> 0) + (d2 >>> 0); dh = (dh + d1 + ((lo / 0x100000000) | 0)) | 0; dl = lo | 0;
    lo = (el >>> 0) + (e2 >>> 0); eh = (eh + e1 + ((lo / 0x100000000) | 0)) | 0; el = lo | 0;
    lo = (fl >>> 0) + (f2 >>> 0); fh = (fh + f1 + ((lo / 0x100000000) | 0)) | 0; fl = lo | 0;
    lo = (gl >>> 0) + (g2 >>> 0); gh = (gh + g1 + ((lo / 0x100000000) | 0)) | 0; gl = lo | 0;
    lo = (hl >>> 0) + (h2 >>> 0); hh = (hh + h1 + ((lo / 0x100000000) | 0)) | 0; hl = lo | 0;
  }
  state.splice(0, 16, ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl);
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const HEX_CODES = new TextEncoder().encode('0123456789abcdef');

/**
 * SHA-512 of the concatenation of `parts`, as 128 lowercase hex ASCII bytes (protocol 1
 * hashes hex text, never raw digests).
 * @param {Uint8Array[]} parts
 * @returns {Uint8Array}
 */
export function sha512Hex(parts) {
  let total = 0;
  for (const part of parts) total += part.length;
  const padded = (Math.floor((total + 17 + 127) / 128)) * 128;
  const buffer = new Uint8Array(padded);
  let at = 0;
  for (const part of parts) {
    buffer.set(part, at);
    at += part.length;
  }
  buffer[total] = 0x80;
  const bits = total * 8;
  // Lengths beyond 2^53 bits cannot occur here; the top 8 bytes of the 16-byte length
  // stay zero and the low ones take the bit count.
  const high = Math.floor(bits / 0x100000000);
  const view = new DataView(buffer.buffer);
  view.setUint32(padded - 8, high >>> 0);
  view.setUint32(padded - 4, bits >>> 0);
  const state = INITIAL.slice();
  blocks(state, buffer, 0, padded);
  const out = new Uint8Array(128);
  for (let i = 0; i < 16; i++) {
    const word = state[i] >>> 0;
    for (let b = 0; b < 4; b++) {
      const byte = (word >>> (24 - 8 * b)) & 0xff;
      out[i * 8 + b * 2] = HEX_CODES[byte >> 4];
      out[i * 8 + b * 2 + 1] = HEX_CODES[byte & 15];
    }
  }
  return out;
}

/** Lowercase hex of bytes. @param {Uint8Array} bytes @returns {string} */
export function toHex(bytes) {
  let text = '';
  for (const byte of bytes) text += HEX[byte];
  return text;
}
