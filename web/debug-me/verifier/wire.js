/**
 * The protobuf form of a message, as carried in `L` frames (spec §7.2's proto2 schema), decoded
 * by hand as strictly as crates/debugme/src/wire.rs (prost) does: every required field must be
 * present, a sum type must have exactly one constructor, a hash value must be 128 lowercase
 * hex characters, an elapsed time must be finite. Unknown fields are skipped as protobuf does;
 * a message field seen twice is merged, a scalar seen twice keeps the last. Every length is
 * checked against the bytes left before anything is sliced, so nothing is allocated from a
 * length the peer wrote.
 *
 * The wire form has no pointers: a decoded activity has `prevActivity` and `prevEntered` null.
 * @module
 */

import * as model from './model.js';

/** Why the bytes of an `L` frame are not a message (wire.rs `WireError`'s text). */
export class WireError extends Error {
  constructor(message) {
    super(message);
    this.name = 'WireError';
  }
}

const decodeError = (description) => new WireError(`protobuf decode error: failed to decode Protobuf message: ${description}`);

const VARINT = 0;
const FIXED64 = 1;
const BYTES = 2;
const START_GROUP = 3;
const END_GROUP = 4;
const FIXED32 = 5;
const RECURSION_LIMIT = 100;

/**
 * The schema: for each message, its fields by tag: [name, kind, sub-schema]. Kinds: 'message',
 * 'bytes', 'double', 'bool'.
 */
const HASH_METHOD = { 33: ['sha512', 'bool'], 34: ['sha3', 'bool'] };
const HASH = { 31: ['method', 'message', HASH_METHOD], 32: ['value', 'bytes'] };
const SIGNATURE = { 19: ['ed25519', 'bytes'], 20: ['other', 'bytes'] };
const PUBLIC_KEY = { 21: ['key', 'bytes'] };
const PERHAPS_SIGNED = {
  22: ['gpgSignedKey', 'message', PUBLIC_KEY],
  23: ['gpgSig', 'message', { 26: ['sig', 'bytes'] }],
  24: ['gpgKeyExport', 'message', { 27: ['export', 'bytes'] }],
  25: ['unsigned', 'message', PUBLIC_KEY],
};
const CONTROL_ACTION = {
  11: ['enteredRejected', 'message', HASH],
  12: ['enteredLastAccepted', 'message', HASH],
  13: ['sessionKey', 'message', PERHAPS_SIGNED],
  14: ['protocolVersion', 'bytes'],
  15: ['sessionKeyAccepted', 'message', PUBLIC_KEY],
  16: ['sessionKeyRejected', 'message', PUBLIC_KEY],
  17: ['chatSender', 'bytes'],
  18: ['chatMessage', 'bytes'],
};
const CONTROL = { 9: ['control', 'message', CONTROL_ACTION], 10: ['sig', 'message', SIGNATURE] };
const ELAPSED = { 28: ['seconds', 'double'] };
const SEEN = { 1: ['seenData', 'bytes'] };
const ENTERED = { 2: ['enteredData', 'bytes'], 3: ['echoData', 'bytes'] };
const ACT_SEEN = {
  6: ['activity', 'message', SEEN], 7: ['elapsed', 'message', ELAPSED], 8: ['sig', 'message', SIGNATURE],
};
const ACT_ENTERED = {
  6: ['activity', 'message', ENTERED], 7: ['elapsed', 'message', ELAPSED], 8: ['sig', 'message', SIGNATURE],
};
const MSG_SEEN = { 4: ['activityMessage', 'message', ACT_SEEN], 5: ['controlMessage', 'message', CONTROL] };
const MSG_ENTERED = { 4: ['activityMessage', 'message', ACT_ENTERED], 5: ['controlMessage', 'message', CONTROL] };
const ANY_MESSAGE = { 29: ['user', 'message', MSG_SEEN], 30: ['developer', 'message', MSG_ENTERED] };

const WIRE_TYPE = { message: BYTES, bytes: BYTES, double: FIXED64, bool: VARINT };

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.at = 0;
  }

  left(end) {
    return end - this.at;
  }

  /** A varint as a Number (exact below 2^53) and whether it exceeds 2^32-1. */
  varint(end) {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.at >= end) throw decodeError('invalid varint');
      const byte = this.bytes[this.at++];
      if (i === 9 && byte > 1) throw decodeError('invalid varint');
      value += (byte & 0x7f) * scale;
      scale *= 128;
      if (byte < 0x80) return value;
    }
    throw decodeError('invalid varint');
  }

  key(end) {
    const key = this.varint(end);
    if (key > 0xffffffff) throw decodeError(`invalid key value: ${key}`);
    const wireType = key % 8;
    if (wireType > 5) throw decodeError(`invalid wire type value: ${wireType}`);
    const tag = Math.floor(key / 8);
    if (tag < 1) throw decodeError('invalid tag value: 0');
    return [tag, wireType];
  }

  skip(wireType, tag, end, depth) {
    if (depth >= RECURSION_LIMIT) throw decodeError('recursion limit reached');
    let len;
    switch (wireType) {
      case VARINT: this.varint(end); len = 0; break;
      case FIXED32: len = 4; break;
      case FIXED64: len = 8; break;
      case BYTES: len = this.varint(end); break;
      case START_GROUP:
        for (;;) {
          const [innerTag, innerType] = this.key(end);
          if (innerType === END_GROUP) {
            if (innerTag !== tag) throw decodeError('unexpected end group tag');
            break;
          }
          this.skip(innerType, innerTag, end, depth + 1);
        }
        len = 0;
        break;
      default: throw decodeError('unexpected end group tag');
    }
    if (len > this.left(end)) throw decodeError('buffer underflow');
    this.at += len;
  }

  /** Merges the fields up to `end` into `into` (prost's `merge`). */
  message(schema, into, end, depth) {
    while (this.at < end) {
      const [tag, wireType] = this.key(end);
      const field = schema[tag];
      if (field === undefined) {
        this.skip(wireType, tag, end, depth);
        continue;
      }
      const [name, kind, sub] = field;
      if (wireType !== WIRE_TYPE[kind]) {
        throw decodeError(`invalid wire type: ${wireTypeName(wireType)} (expected ${wireTypeName(WIRE_TYPE[kind])})`);
      }
      if (kind === 'bool') {
        into[name] = this.varint(end) !== 0;
      } else if (kind === 'double') {
        if (this.left(end) < 8) throw decodeError('buffer underflow');
        into[name] = new DataView(this.bytes.buffer, this.bytes.byteOffset + this.at, 8).getFloat64(0, true);
        this.at += 8;
      } else {
        const len = this.varint(end);
        if (len > this.left(end)) throw decodeError('buffer underflow');
        if (kind === 'bytes') {
          into[name] = this.bytes.slice(this.at, this.at + len);
          this.at += len;
        } else {
          if (depth + 1 >= RECURSION_LIMIT) throw decodeError('recursion limit reached');
          const inner = into[name] ?? {};
          const innerEnd = this.at + len;
          this.message(sub, inner, innerEnd, depth + 1);
          into[name] = inner;
        }
      }
    }
  }
}

function wireTypeName(type) {
  return ['Varint', 'SixtyFourBit', 'LengthDelimited', 'StartGroup', 'EndGroup', 'ThirtyTwoBit'][type];
}

function required(value, name) {
  if (value === undefined) throw new WireError(`required field ${name} is missing`);
  return value;
}

function one(name, present) {
  const count = present.filter(Boolean).length;
  if (count === 0) throw new WireError(`${name} has none of its constructors`);
  if (count > 1) throw new WireError(`${name} has fields of more than one constructor`);
}

function signature(wire) {
  one('SignatureP', [wire.ed25519 !== undefined, wire.other !== undefined]);
  return wire.ed25519 !== undefined
    ? model.signature('Ed25519', wire.ed25519)
    : model.signature('Other', wire.other);
}

function hash(wire) {
  const method = required(wire.method, 'HashP.method = 31');
  one('HashMethodP', [method.sha512 !== undefined, method.sha3 !== undefined]);
  const value = required(wire.value, 'HashP.value = 32');
  const sound = value.length === 128
    && value.every((b) => (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66));
  if (!sound) throw new WireError('hash value is not 128 lowercase hex ASCII characters');
  return model.hash(method.sha512 !== undefined ? 'SHA512' : 'SHA3', value);
}

function publicKey(wire) {
  return required(wire.key, 'PublicKeyP.key = 21');
}

function perhapsSigned(wire) {
  const gpg = wire.gpgSignedKey !== undefined || wire.gpgSig !== undefined
    || wire.gpgKeyExport !== undefined;
  if (!gpg && wire.unsigned !== undefined) return model.unsigned(publicKey(wire.unsigned));
  if (gpg && wire.unsigned === undefined) {
    return model.gpgSigned(
      publicKey(required(wire.gpgSignedKey, 'PerhapsSignedP.gpg_signed_key = 22')),
      required(required(wire.gpgSig, 'PerhapsSignedP.gpg_sig = 23').sig, 'GpgSigP.sig = 26'),
      required(
        required(wire.gpgKeyExport, 'PerhapsSignedP.gpg_key_export = 24').export,
        'GpgKeyExportP.export = 27',
      ),
    );
  }
  one('PerhapsSignedP', [gpg, wire.unsigned !== undefined]);
  throw new Error('unreachable');
}

function controlAction(wire) {
  one('ControlActionP', [
    wire.enteredRejected !== undefined || wire.enteredLastAccepted !== undefined,
    wire.sessionKey !== undefined || wire.protocolVersion !== undefined,
    wire.sessionKeyAccepted !== undefined,
    wire.sessionKeyRejected !== undefined,
    wire.chatSender !== undefined || wire.chatMessage !== undefined,
  ]);
  if (wire.enteredRejected !== undefined) {
    return model.enteredRejected(
      hash(wire.enteredRejected),
      wire.enteredLastAccepted === undefined ? null : hash(wire.enteredLastAccepted),
    );
  }
  if (wire.enteredLastAccepted !== undefined) {
    throw new WireError('required field ControlActionP.entered_rejected = 11 is missing');
  }
  if (wire.sessionKeyAccepted !== undefined) {
    return model.sessionKeyAccepted(publicKey(wire.sessionKeyAccepted));
  }
  if (wire.sessionKeyRejected !== undefined) {
    return model.sessionKeyRejected(publicKey(wire.sessionKeyRejected));
  }
  if (wire.sessionKey !== undefined || wire.protocolVersion !== undefined) {
    return model.sessionKey(
      perhapsSigned(required(wire.sessionKey, 'ControlActionP.session_key = 13')),
      required(wire.protocolVersion, 'ControlActionP.protocol_version = 14'),
    );
  }
  return model.chatMessage(
    required(wire.chatSender, 'ControlActionP.chat_sender = 17'),
    required(wire.chatMessage, 'ControlActionP.chat_message = 18'),
  );
}

function control(side, wire) {
  const action = controlAction(required(wire.control, 'ControlP.control = 9'));
  return model.control(side, action, signature(required(wire.sig, 'ControlP.sig = 10')));
}

function elapsedSeconds(elapsed, name) {
  const seconds = required(required(elapsed, `${name}.elapsed = 7`).seconds, 'ElapsedTimeP.seconds = 28');
  if (!Number.isFinite(seconds)) {
    throw new WireError(`elapsed time ${Number.isNaN(seconds) ? 'NaN' : seconds > 0 ? 'inf' : '-inf'} is not a finite number`);
  }
  return seconds;
}

function message(name, wire, side, activity) {
  one(name, [wire.activityMessage !== undefined, wire.controlMessage !== undefined]);
  return wire.activityMessage !== undefined ? activity(wire.activityMessage) : control(side, wire.controlMessage);
}

/**
 * Reads the protobuf bytes of one `L` frame's message (the tag byte already removed).
 * Throws a WireError, with wire.rs's text, for anything the schema does not allow.
 * @param {Uint8Array} bytes
 * @returns {import('./model.js').Message}
 */
export function decodeMessage(bytes) {
  const wire = {};
  new Reader(bytes).message(ANY_MESSAGE, wire, bytes.length, 0);
  one('AnyMessageP', [wire.user !== undefined, wire.developer !== undefined]);
  if (wire.user !== undefined) {
    return message('MsgSeenP', wire.user, 'user', (act) => {
      const seen = required(act.activity, 'ActSeenP.activity = 6');
      const output = required(seen.seenData, 'SeenP.seen_data = 1');
      const seconds = elapsedSeconds(act.elapsed, 'ActSeenP');
      const sig = signature(required(act.sig, 'ActSeenP.sig = 8'));
      return model.seen(output, null, null, seconds, sig);
    });
  }
  return message('MsgEnteredP', wire.developer, 'developer', (act) => {
    const entered = required(act.activity, 'ActEnteredP.activity = 6');
    const input = required(entered.enteredData, 'EnteredP.entered_data = 2');
    const echo = required(entered.echoData, 'EnteredP.echo_data = 3');
    const seconds = elapsedSeconds(act.elapsed, 'ActEnteredP');
    const sig = signature(required(act.sig, 'ActEnteredP.sig = 8'));
    return model.entered(input, echo, null, null, seconds, sig);
  });
}

class Writer {
  constructor() {
    this.parts = [];
  }

  varint(n) {
    const out = [];
    while (n >= 0x80) {
      out.push((n % 128) | 0x80);
      n = Math.floor(n / 128);
    }
    out.push(n);
    this.parts.push(Uint8Array.from(out));
  }

  bytes(tag, bytes) {
    this.varint(tag * 8 + BYTES);
    this.varint(bytes.length);
    this.parts.push(bytes);
  }

  message(tag, write) {
    const inner = new Writer();
    write(inner);
    this.bytes(tag, inner.finish());
  }

  finish() {
    const total = this.parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const part of this.parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }
}

function writeSignature(w, tag, sig) {
  w.message(tag, (s) => s.bytes(sig.kind === 'Ed25519' ? 19 : 20, sig.bytes));
}

function writeHash(w, tag, h) {
  w.message(tag, (x) => {
    x.message(31, (m) => {
      m.varint((h.method === 'SHA512' ? 33 : 34) * 8 + VARINT);
      m.varint(1);
    });
    x.bytes(32, h.value);
  });
}

/**
 * The protobuf bytes of a message (what an `L` frame carries), without its pointers, every
 * required field present, in ascending tag order (wire.rs `encode_message`).
 * @param {import('./model.js').Message} msg
 * @returns {Uint8Array}
 */
export function encodeMessage(msg) {
  const w = new Writer();
  w.message(msg.side === 'user' ? 29 : 30, (m) => {
    if (msg.type === 'Control') {
      m.message(5, (c) => {
        c.message(9, (a) => {
          const action = msg.control;
          switch (action.tag) {
            case 'EnteredRejected':
              writeHash(a, 11, action.enteredRejected);
              if (action.enteredLastAccepted) writeHash(a, 12, action.enteredLastAccepted);
              break;
            case 'SessionKey':
              a.message(13, (k) => {
                if (action.key.tag === 'GpgSigned') {
                  k.message(22, (p) => p.bytes(21, action.key.key));
                  k.message(23, (p) => p.bytes(26, action.key.statement));
                  k.message(24, (p) => p.bytes(27, action.key.export));
                } else {
                  k.message(25, (p) => p.bytes(21, action.key.key));
                }
              });
              a.bytes(14, action.version);
              break;
            case 'SessionKeyAccepted': a.message(15, (p) => p.bytes(21, action.key)); break;
            case 'SessionKeyRejected': a.message(16, (p) => p.bytes(21, action.key)); break;
            default: a.bytes(17, action.sender); a.bytes(18, action.text);
          }
        });
        writeSignature(c, 10, msg.signature);
      });
    } else {
      m.message(4, (act) => {
        act.message(6, (a) => {
          if (msg.type === 'Seen') a.bytes(1, msg.output);
          else {
            a.bytes(2, msg.input);
            a.bytes(3, msg.echo);
          }
        });
        act.message(7, (e) => {
          e.varint(28 * 8 + FIXED64);
          const double = new Uint8Array(8);
          new DataView(double.buffer).setFloat64(0, msg.elapsedTime, true);
          e.parts.push(double);
        });
        writeSignature(act, 8, msg.signature);
      });
    }
  });
  return w.finish();
}
