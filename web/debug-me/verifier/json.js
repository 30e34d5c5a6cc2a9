/**
 * The JSON log format: one log line per line, as the real debug-me writes and reads it, and
 * as crates/debugme/src/json.rs decodes it, with the same refusals and the same messages.
 *
 * The JSON text is parsed by a port of serde_json's parser (not `JSON.parse`), because the
 * verdict on a line that is not JSON quotes serde_json's message and position, and serde_json
 * refuses what `JSON.parse` accepts (a lone surrogate escape, nesting deeper than 127, a
 * number beyond the doubles). Bytes are `{"v":"text"}` when valid UTF-8, else
 * `{"b64":"…"}`; sum types are one-key objects named after the constructor.
 * @module
 */

import * as model from './model.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });

/** Why a log line could not be read: `message` is json.rs's `JsonError` text. */
export class JsonError extends Error {
  constructor(message) {
    super(message);
    this.name = 'JsonError';
  }
}

class Syntax extends Error {}

const WHITESPACE = new Set([0x20, 0x0a, 0x09, 0x0d]);

/** serde_json's parser of a `Value` (with `preserve_order`: objects are `Map`s). */
class Parser {
  constructor(bytes) {
    this.bytes = bytes;
    this.index = 0;
    this.depth = 128;
  }

  positionOf(i) {
    let start = 0;
    let line = 1;
    for (let j = 0; j < i; j++) {
      if (this.bytes[j] === 0x0a) {
        start = j + 1;
        line++;
      }
    }
    return `line ${line} column ${i - start}`;
  }

  /** An error at the last byte consumed (serde_json's `error`). */
  error(code) {
    return new Syntax(`${code} at ${this.positionOf(this.index)}`);
  }

  /** An error at the next byte (serde_json's `peek_error`). */
  peekError(code) {
    return new Syntax(`${code} at ${this.positionOf(Math.min(this.bytes.length, this.index + 1))}`);
  }

  peek() {
    return this.index < this.bytes.length ? this.bytes[this.index] : undefined;
  }

  whitespace() {
    while (this.index < this.bytes.length && WHITESPACE.has(this.bytes[this.index])) this.index++;
    return this.peek();
  }

  document() {
    const value = this.value();
    if (this.whitespace() !== undefined) throw this.peekError('trailing characters');
    return value;
  }

  value() {
    const peek = this.whitespace();
    switch (peek) {
      case undefined:
        throw this.peekError('EOF while parsing a value');
      case 0x6e: this.index++; this.ident('ull'); return null;
      case 0x74: this.index++; this.ident('rue'); return true;
      case 0x66: this.index++; this.ident('alse'); return false;
      case 0x2d: this.index++; return this.number(false);
      case 0x22: this.index++; return this.string();
      case 0x5b: {
        if (--this.depth === 0) throw this.peekError('recursion limit exceeded');
        this.index++;
        const items = [];
        let first = true;
        for (;;) {
          const next = this.whitespace();
          if (next === undefined) throw this.peekError('EOF while parsing a list');
          if (next === 0x5d) break;
          if (first) {
            first = false;
          } else if (next === 0x2c) {
            this.index++;
            const after = this.whitespace();
            if (after === 0x5d) throw this.peekError('trailing comma');
            if (after === undefined) throw this.peekError('EOF while parsing a value');
          } else {
            throw this.peekError('expected `,` or `]`');
          }
          items.push(this.value());
        }
        this.index++;
        this.depth++;
        return items;
      }
      case 0x7b: {
        if (--this.depth === 0) throw this.peekError('recursion limit exceeded');
        this.index++;
        const object = new Map();
        let first = true;
        for (;;) {
          const next = this.whitespace();
          if (next === undefined) throw this.peekError('EOF while parsing an object');
          if (next === 0x7d) break;
          if (first) {
            first = false;
            if (next !== 0x22) throw this.peekError('key must be a string');
          } else if (next === 0x2c) {
            this.index++;
            const after = this.whitespace();
            if (after === 0x7d) throw this.peekError('trailing comma');
            if (after === undefined) throw this.peekError('EOF while parsing a value');
            if (after !== 0x22) throw this.peekError('key must be a string');
          } else {
            throw this.peekError('expected `,` or `}`');
          }
          this.index++;
          const key = this.string();
          const colon = this.whitespace();
          if (colon === undefined) throw this.peekError('EOF while parsing an object');
          if (colon !== 0x3a) throw this.peekError('expected `:`');
          this.index++;
          object.set(key, this.value());
        }
        this.index++;
        this.depth++;
        return object;
      }
      default:
        if (peek >= 0x30 && peek <= 0x39) return this.number(true);
        throw this.peekError('expected value');
    }
  }

  ident(rest) {
    for (let i = 0; i < rest.length; i++) {
      if (this.index >= this.bytes.length) throw this.error('EOF while parsing a value');
      const next = this.bytes[this.index++];
      if (next !== rest.charCodeAt(i)) throw this.error('expected ident');
    }
  }

  isDigit(byte) {
    return byte !== undefined && byte >= 0x30 && byte <= 0x39;
  }

  number(positive) {
    const start = this.index;
    if (this.index >= this.bytes.length) throw this.error('EOF while parsing a value');
    const first = this.bytes[this.index++];
    let zero = true;
    if (first === 0x30) {
      if (this.isDigit(this.peek())) throw this.peekError('invalid number');
    } else if (first >= 0x31 && first <= 0x39) {
      zero = false;
      while (this.isDigit(this.peek())) this.index++;
    } else {
      throw this.error('invalid number');
    }
    let next = this.peek();
    if (next === 0x2e) {
      this.index++;
      let digits = 0;
      while (this.isDigit(this.peek())) {
        if (this.bytes[this.index] !== 0x30) zero = false;
        this.index++;
        digits++;
      }
      if (digits === 0) {
        if (this.peek() !== undefined) throw this.peekError('invalid number');
        throw this.peekError('EOF while parsing a value');
      }
      next = this.peek();
    }
    if (next === 0x65 || next === 0x45) {
      this.index++;
      let positiveExp = true;
      if (this.peek() === 0x2b) this.index++;
      else if (this.peek() === 0x2d) {
        this.index++;
        positiveExp = false;
      }
      if (this.index >= this.bytes.length) throw this.error('EOF while parsing a value');
      const d = this.bytes[this.index++];
      if (!this.isDigit(d)) throw this.error('invalid number');
      let exp = d - 0x30;
      while (this.isDigit(this.peek())) {
        const digit = this.bytes[this.index++] - 0x30;
        if (exp > Math.floor((2147483647 - digit) / 10)) {
          // serde_json: an exponent beyond i32 is out of range, or zero.
          if (!zero && positiveExp) throw this.error('number out of range');
          while (this.isDigit(this.peek())) this.index++;
          return positive ? 0 : -0;
        }
        exp = exp * 10 + digit;
      }
    }
    const text = decoder.decode(this.bytes.subarray(start, this.index));
    const value = Number(text);
    if (!Number.isFinite(value)) throw this.error('number out of range');
    return positive ? value : -value;
  }

  string() {
    const bytes = this.bytes;
    let text = '';
    let start = this.index;
    for (;;) {
      while (this.index < bytes.length) {
        const b = bytes[this.index];
        if (b === 0x22 || b === 0x5c || b < 0x20) break;
        this.index++;
      }
      if (this.index === bytes.length) throw this.error('EOF while parsing a string');
      const b = bytes[this.index];
      if (b === 0x22) {
        text += decoder.decode(bytes.subarray(start, this.index));
        this.index++;
        return text;
      }
      if (b === 0x5c) {
        text += decoder.decode(bytes.subarray(start, this.index));
        this.index++;
        text += this.escape();
        start = this.index;
      } else {
        this.index++;
        throw this.error('control character (\\u0000-\\u001F) found while parsing a string');
      }
    }
  }

  escape() {
    if (this.index >= this.bytes.length) throw this.error('EOF while parsing a string');
    const ch = this.bytes[this.index++];
    switch (ch) {
      case 0x22: return '"';
      case 0x5c: return '\\';
      case 0x2f: return '/';
      case 0x62: return '\b';
      case 0x66: return '\f';
      case 0x6e: return '\n';
      case 0x72: return '\r';
      case 0x74: return '\t';
      case 0x75: return this.unicodeEscape();
      default: throw this.error('invalid escape');
    }
  }

  hexEscape() {
    if (this.bytes.length - this.index < 4) {
      this.index = this.bytes.length;
      throw this.error('EOF while parsing a string');
    }
    let n = 0;
    let valid = true;
    for (let i = 0; i < 4; i++) {
      const c = this.bytes[this.index + i];
      let v;
      if (c >= 0x30 && c <= 0x39) v = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) v = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) v = c - 0x37;
      else valid = false;
      n = n * 16 + (v ?? 0);
    }
    this.index += 4;
    if (!valid) throw this.error('invalid escape');
    return n;
  }

  unicodeEscape() {
    const n = this.hexEscape();
    if (n >= 0xdc00 && n <= 0xdfff) throw this.error('lone leading surrogate in hex escape');
    if (n < 0xd800 || n > 0xdbff) return String.fromCharCode(n);
    for (const expected of [0x5c, 0x75]) {
      if (this.index >= this.bytes.length) throw this.error('EOF while parsing a string');
      const next = this.bytes[this.index++];
      if (next !== expected) throw this.error('unexpected end of hex escape');
    }
    const n2 = this.hexEscape();
    if (n2 < 0xdc00 || n2 > 0xdfff) throw this.error('lone leading surrogate in hex escape');
    return String.fromCharCode(n, n2);
  }
}

/**
 * Parses JSON text as serde_json does; throws JsonError `not JSON: …` with serde_json's message.
 * @param {string | Uint8Array} text
 */
export function parseJson(text) {
  const bytes = typeof text === 'string' ? encoder.encode(text) : text;
  try {
    return new Parser(bytes).document();
  } catch (error) {
    if (error instanceof Syntax) throw new JsonError(`not JSON: ${error.message}`);
    throw error;
  }
}

/** A path into the JSON value, for error messages. */
class At {
  constructor(path) {
    this.path = path;
  }

  key(key) {
    return new At(this.path === '' ? key : `${this.path}.${key}`);
  }

  index(i) {
    return new At(`${this.path}[${i}]`);
  }

  expected(what) {
    return new JsonError(`${this.path === '' ? 'line' : this.path}: expected ${what}`);
  }

  object(value) {
    if (!(value instanceof Map)) throw this.expected('an object');
    return value;
  }

  field(object, key) {
    if (!object.has(key)) throw this.key(key).expected('this key');
    return object.get(key);
  }

  tagged(value, tags) {
    const object = this.object(value);
    if (object.size !== 1) throw this.expected(tags);
    return object.entries().next().value;
  }

  array(value, len) {
    if (!Array.isArray(value) || value.length !== len) {
      throw this.expected(len === 2 ? 'an array of 2' : 'an array of 3');
    }
    return value;
  }
}

function optionalField(object, key) {
  return object.has(key) ? object.get(key) : null;
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const BASE64_VALUES = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) BASE64_VALUES[BASE64.charCodeAt(i)] = i;

/** Standard padded base64, canonical (as the Rust base64 crate's STANDARD engine), or null. */
function decodeBase64(text) {
  if (text.length % 4 !== 0) return null;
  let pad = 0;
  if (text.endsWith('==')) pad = 2;
  else if (text.endsWith('=')) pad = 1;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const last = i + 4 === text.length;
    const chars = last ? 4 - pad : 4;
    const v = [0, 0, 0, 0];
    for (let j = 0; j < chars; j++) {
      const c = text.charCodeAt(i + j);
      const value = c < 128 ? BASE64_VALUES[c] : -1;
      if (value < 0) return null;
      v[j] = value;
    }
    const n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    if (chars === 4) {
      out[o++] = n >> 16; out[o++] = (n >> 8) & 255; out[o++] = n & 255;
    } else if (chars === 3) {
      if (v[2] & 3) return null;
      out[o++] = n >> 16; out[o++] = (n >> 8) & 255;
    } else {
      if (v[1] & 15) return null;
      out[o++] = n >> 16;
    }
  }
  return out;
}

/** Standard padded base64 of bytes. */
function encodeBase64(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    text += BASE64[n >> 18] + BASE64[(n >> 12) & 63];
    text += i + 1 < bytes.length ? BASE64[(n >> 6) & 63] : '=';
    text += i + 2 < bytes.length ? BASE64[n & 63] : '=';
  }
  return text;
}

function val(at, value) {
  const object = at.object(value);
  if (object.has('v')) {
    const text = object.get('v');
    if (typeof text !== 'string') throw at.key('v').expected('a string');
    return encoder.encode(text);
  }
  const b64 = object.get('b64');
  if (typeof b64 !== 'string') throw at.expected('{"v": text} or {"b64": base64}');
  const bytes = decodeBase64(b64);
  if (bytes === null) throw at.key('b64').expected('standard padded base64');
  return bytes;
}

function hash(at, value) {
  const object = at.object(value);
  const method = at.field(object, 'hashMethod');
  if (method !== 'SHA512' && method !== 'SHA3') {
    throw at.key('hashMethod').expected('"SHA512" or "SHA3"');
  }
  return model.hash(method, val(at.key('hashValue'), at.field(object, 'hashValue')));
}

function optionalHash(at, value) {
  return value === null ? null : hash(at, value);
}

function signature(at, value) {
  const tags = '{"Ed25519Signature": …} or {"OtherSignature": …}';
  const [tag, inner] = at.tagged(value, tags);
  if (tag === 'Ed25519Signature') return model.signature('Ed25519', val(at.key(tag), inner));
  if (tag === 'OtherSignature') return model.signature('Other', val(at.key(tag), inner));
  throw at.expected(tags);
}

function perhapsSigned(at, value) {
  const tags = '{"UnSigned": …} or {"GpgSigned": […]}';
  const [tag, inner] = at.tagged(value, tags);
  if (tag === 'UnSigned') return model.unsigned(val(at.key('UnSigned'), inner));
  if (tag === 'GpgSigned') {
    const here = at.key('GpgSigned');
    const items = here.array(inner, 3);
    return model.gpgSigned(
      val(here.index(0), items[0]),
      val(here.index(1), items[1]),
      val(here.index(2), items[2]),
    );
  }
  throw at.expected(tags);
}

function controlAction(at, value) {
  const tags = 'a control action (EnteredRejected, SessionKey, SessionKeyAccepted, '
    + 'SessionKeyRejected or ChatMessage)';
  const [tag, inner] = at.tagged(value, tags);
  const here = at.key(tag);
  switch (tag) {
    case 'EnteredRejected': {
      const object = here.object(inner);
      return model.enteredRejected(
        hash(here.key('enteredRejected'), here.field(object, 'enteredRejected')),
        optionalHash(here.key('enteredLastAccepted'), optionalField(object, 'enteredLastAccepted')),
      );
    }
    case 'SessionKey': {
      const items = here.array(inner, 2);
      return model.sessionKey(perhapsSigned(here.index(0), items[0]), val(here.index(1), items[1]));
    }
    case 'SessionKeyAccepted': return model.sessionKeyAccepted(val(here, inner));
    case 'SessionKeyRejected': return model.sessionKeyRejected(val(here, inner));
    case 'ChatMessage': {
      const items = here.array(inner, 2);
      return model.chatMessage(val(here.index(0), items[0]), val(here.index(1), items[1]));
    }
    default: throw here.expected(tags);
  }
}

function number(at, object, key) {
  const value = at.field(object, key);
  if (typeof value !== 'number') throw at.key(key).expected('a number');
  return value;
}

function message(at, value, side) {
  const tags = '{"ActivityMessage": …} or {"ControlMessage": …}';
  const [tag, inner] = at.tagged(value, tags);
  if (tag === 'ActivityMessage') {
    const here = at.key('ActivityMessage');
    const object = here.object(inner);
    const activityAt = here.key('activity');
    const activity = activityAt.object(here.field(object, 'activity'));
    let fields;
    if (side === 'user') {
      fields = [val(activityAt.key('seenData'), activityAt.field(activity, 'seenData'))];
    } else {
      fields = [
        val(activityAt.key('enteredData'), activityAt.field(activity, 'enteredData')),
        val(activityAt.key('echoData'), activityAt.field(activity, 'echoData')),
      ];
    }
    const prevActivity = optionalHash(here.key('prevActivity'), optionalField(object, 'prevActivity'));
    const prevEntered = optionalHash(here.key('prevEntered'), optionalField(object, 'prevEntered'));
    const elapsed = number(here, object, 'elapsedTime');
    const sig = signature(here.key('activitySignature'), here.field(object, 'activitySignature'));
    return side === 'user'
      ? model.seen(fields[0], prevActivity, prevEntered, elapsed, sig)
      : model.entered(fields[0], fields[1], prevActivity, prevEntered, elapsed, sig);
  }
  if (tag === 'ControlMessage') {
    const here = at.key('ControlMessage');
    const object = here.object(inner);
    const action = controlAction(here.key('control'), here.field(object, 'control'));
    const sig = signature(here.key('controlSignature'), here.field(object, 'controlSignature'));
    return model.control(side, action, sig);
  }
  throw at.expected(tags);
}

function anyMessage(at, value) {
  const tags = '{"User": …} or {"Developer": …}';
  const [tag, inner] = at.tagged(value, tags);
  if (tag === 'User') return message(at.key('User'), inner, 'user');
  if (tag === 'Developer') return message(at.key('Developer'), inner, 'developer');
  throw at.expected(tags);
}

/**
 * Reads one log line (json.rs `decode_line`); throws a JsonError with json.rs's message.
 * @param {string | Uint8Array} line
 * @returns {import('./model.js').LogLine}
 */
export function decodeLine(line) {
  const value = parseJson(line);
  const at = new At('');
  const object = at.object(value);
  const logged = optionalField(object, 'loggedHash');
  const loggedHash = logged === null ? null : hash(at.key('loggedHash'), logged);
  const timestamp = number(at, object, 'loggedTimestamp');
  const msg = anyMessage(at.key('loggedMessage'), at.field(object, 'loggedMessage'));
  return { message: msg, hash: loggedHash, timestamp };
}

const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function valJson(bytes) {
  try {
    return `{"v":${JSON.stringify(fatal.decode(bytes))}}`;
  } catch {
    return `{"b64":"${encodeBase64(bytes)}"}`;
  }
}

/**
 * A double as serde_json writes it (ryu's shortest form: `1.0`, `0.001`, `1e-7`, `1.5e300`),
 * `null` when not finite.
 */
export function numberJson(x) {
  if (!Number.isFinite(x)) return 'null';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mantissa, exponent] = Math.abs(x).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const kk = Number(exponent) + 1;
  const length = digits.length;
  let body;
  if (length <= kk && kk <= 16) {
    body = `${digits}${'0'.repeat(kk - length)}.0`;
  } else if (kk > 0 && kk <= 16) {
    body = `${digits.slice(0, kk)}.${digits.slice(kk)}`;
  } else if (kk > -5 && kk <= 0) {
    body = `0.${'0'.repeat(-kk)}${digits}`;
  } else if (length === 1) {
    body = `${digits}e${kk - 1}`;
  } else {
    body = `${digits[0]}.${digits.slice(1)}e${kk - 1}`;
  }
  return sign + body;
}

function hashJson(h) {
  return h === null ? 'null' : `{"hashMethod":"${h.method}","hashValue":${valJson(h.value)}}`;
}

function signatureJson(sig) {
  return `{"${sig.kind === 'Ed25519' ? 'Ed25519Signature' : 'OtherSignature'}":${valJson(sig.bytes)}}`;
}

function perhapsSignedJson(key) {
  if (key.tag === 'UnSigned') return `{"UnSigned":${valJson(key.key)}}`;
  return `{"GpgSigned":[${valJson(key.key)},${valJson(key.statement)},${valJson(key.export)}]}`;
}

function controlActionJson(action) {
  switch (action.tag) {
    case 'EnteredRejected':
      return `{"EnteredRejected":{"enteredRejected":${hashJson(action.enteredRejected)},`
        + `"enteredLastAccepted":${hashJson(action.enteredLastAccepted)}}}`;
    case 'SessionKey':
      return `{"SessionKey":[${perhapsSignedJson(action.key)},${valJson(action.version)}]}`;
    case 'SessionKeyAccepted': return `{"SessionKeyAccepted":${valJson(action.key)}}`;
    case 'SessionKeyRejected': return `{"SessionKeyRejected":${valJson(action.key)}}`;
    default:
      return `{"ChatMessage":[${valJson(action.sender)},${valJson(action.text)}]}`;
  }
}

/** The JSON of a message (`{"User": …}` or `{"Developer": …}`). */
function messageJson(msg) {
  let inner;
  if (msg.type === 'Control') {
    inner = `{"ControlMessage":{"control":${controlActionJson(msg.control)},`
      + `"controlSignature":${signatureJson(msg.signature)}}}`;
  } else {
    const activity = msg.type === 'Seen'
      ? `{"seenData":${valJson(msg.output)}}`
      : `{"enteredData":${valJson(msg.input)},"echoData":${valJson(msg.echo)}}`;
    inner = `{"ActivityMessage":{"activity":${activity},`
      + `"prevActivity":${hashJson(msg.prevActivity)},"prevEntered":${hashJson(msg.prevEntered)},`
      + `"elapsedTime":${numberJson(msg.elapsedTime)},`
      + `"activitySignature":${signatureJson(msg.signature)}}}`;
  }
  return `{"${msg.side === 'user' ? 'User' : 'Developer'}":${inner}}`;
}

/**
 * Writes one log line (json.rs `encode_line`, without the newline), byte for byte as the
 * Rust encoder does.
 * @param {import('./model.js').LogLine} line
 */
export function encodeLine(line) {
  return `{"loggedMessage":${messageJson(line.message)},`
    + `"loggedTimestamp":${numberJson(line.timestamp)},"loggedHash":${hashJson(line.hash)}}`;
}
