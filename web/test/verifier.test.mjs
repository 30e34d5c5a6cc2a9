// Unit tests of the browser's debug-me verifier (web/debug-me/verifier): the specification's
// hashing vectors, the serde_json-exact JSON decoder and encoder, the strict wire decoder's
// refusals, and the incremental API's events and verdicts. The differential test against
// `kanava verify --json` is kanava/tests/e2e/web_verify_differential.rs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';

import * as hash from '../debug-me/verifier/hash.js';
import { sha512Hex, toHex } from '../debug-me/verifier/sha512.js';
import { decodeLine, encodeLine, parseJson, numberJson } from '../debug-me/verifier/json.js';
import {
  SessionVerifier, decodeMessage, encodeMessage, logLine, verifyLogText, verifyLogBytes, WireError,
} from '../debug-me/verifier/index.js';

const root = new URL('../../', import.meta.url);
const read = (path) => readFileSync(new URL(path, root), 'utf8');
const text = (bytes) => new TextDecoder().decode(bytes);
const lines = (log) => log.split('\n').filter((l) => l.trim() !== '');
const webcrypto = globalThis.crypto ?? (await import('node:crypto')).webcrypto;
const noGpg = async () => { throw new Error('no gpg in this test'); };

test('SHA-512 agrees with WebCrypto on every length around the block boundaries', async () => {
  for (const n of [0, 1, 55, 111, 112, 113, 127, 128, 129, 255, 256, 1000, 70000]) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 255);
    const expected = toHex(new Uint8Array(await webcrypto.subtle.digest('SHA-512', bytes)));
    assert.equal(text(sha512Hex([bytes.subarray(0, n >> 1), bytes.subarray(n >> 1)])), expected, `${n} bytes`);
  }
});

test('show renders doubles as Haskell does (hash.rs vectors)', () => {
  const cases = [
    [0, '0.0'], [-0, '-0.0'], [0.27964605, '0.27964605'], [9.953997539, '9.953997539'],
    [7.21099e-4, '7.21099e-4'], [4.8652e-5, '4.8652e-5'], [2.309494e-3, '2.309494e-3'],
    [9.81424e-4, '9.81424e-4'], [12, '12.0'], [1e7, '1.0e7'], [0.05, '5.0e-2'],
    [1234567.5, '1234567.5'], [0.1, '0.1'], [100, '100.0'], [-2.5, '-2.5'], [1.5e300, '1.5e300'],
    [Infinity, 'Infinity'], [NaN, 'NaN'],
  ];
  for (const [x, shown] of cases) assert.equal(hash.show(x), shown, String(x));
});

test('the worked example and the real logs hash as the specification says (vectors.rs)', () => {
  const seen = { type: 'Seen', output: new TextEncoder().encode('** debug-me session started\r\n') };
  assert.equal(text(hash.activityContent(seen)), '77f7af90ad7f66ac00b2c7ca1b7784e766dfd1fa7c5540a8caa0d72fb32855beee24653d1a14c71b3abacb7de552389372bf5d018a2f75c863b866b476f30cdb');
  assert.equal(text(hash.elapsedTime(0)), 'e1806922f23660c4727f1f4a84dbb03e5eb4d5d0cd2791aaa214be80aec2a1fb1d573a58091ccf4ec98ad8c3e7883dfea735b9e3d43009dea18020aa61d6fb8e');
  const a = lines(read('crates/debugme/testdata/appendix-a.log')).map(decodeLine);
  assert.equal(text(hash.controlSigned(a[0].message)), 'af7259f15072a9aaf290381d32a472dd05aa17cf35284f8bdd1220a83e52b04d0e02f0b383d0df13513a100ea04ee2eca38b6e049e5c28b11c0fc3b05045504e');
  assert.equal(text(hash.activitySigned(a[1].message)), 'f89d5d61fd2abd94ad9ba10e2a363223761a8f035d12bdddbed4b4ec21edbd93593a30706e473048eaa695e820e757c2498ce686efb257378ad8dc3f4f6c5691');
  assert.equal(text(hash.signature(a[1].message.signature)), 'db8ed4e49c61886785407ad775bd47ea7ce0fb0aefcb92db71eadc30a9d939e1673183314633b6c1ee51753e41e16489fb21140793393db89539cf05789892ff');
  assert.equal(hash.show(a[2].message.elapsedTime), '7.21099e-4');
  for (const line of a.slice(1)) assert.deepEqual(hash.activity(line.message), line.hash);
  const [dev] = lines(read('crates/debugme/testdata/developer-entered.log')).map(decodeLine);
  assert.equal(hash.show(dev.message.elapsedTime), '9.953997539');
  assert.ok(text(hash.activityContent(dev.message)).startsWith('804052db6cc0dbd2'));
  assert.ok(text(hash.activitySigned(dev.message)).startsWith('675d7de8e6c423ba'));
  assert.deepEqual(hash.activity(dev.message), dev.hash);
  const b = lines(read('crates/debugme/testdata/appendix-b-controls.log')).map(decodeLine);
  assert.ok(text(hash.controlSigned(b[0].message)).startsWith('4cdf9f0f92855c04'));
  assert.ok(text(hash.publicKey(b[1].message.control.key.key)).startsWith('859ad190'));
});

test('JSON refusals quote serde_json and json.rs word for word', () => {
  const refusals = [
    ['not json', 'not JSON: expected ident at line 1 column 2'],
    ['', 'not JSON: EOF while parsing a value at line 1 column 0'],
    ['{"a":1,}', 'not JSON: trailing comma at line 1 column 8'],
    ['{"a":1} x', 'not JSON: trailing characters at line 1 column 9'],
    ['{"a":"\\ud800"}', 'not JSON: unexpected end of hex escape at line 1 column 13'],
    ['{"a":1e999}', 'not JSON: number out of range at line 1 column 10'],
    ['{"a":01}', 'not JSON: invalid number at line 1 column 7'],
    ['{"a":"\u0001"}', 'not JSON: control character (\\u0000-\\u001F) found while parsing a string at line 1 column 7'],
    [`${'['.repeat(200)}`, 'not JSON: recursion limit exceeded at line 1 column 128'],
    ['[]', 'line: expected an object'],
    ['{}', 'loggedTimestamp: expected this key'],
    ['{"loggedTimestamp":"x"}', 'loggedTimestamp: expected a number'],
    ['{"loggedTimestamp":1,"loggedMessage":{"User":{"ControlMessage":{"control":{"ChatMessage":[{"v":"a"}]}}}}}',
      'loggedMessage.User.ControlMessage.control.ChatMessage: expected an array of 2'],
    ['{"loggedTimestamp":1,"loggedMessage":{"Developer":{"ActivityMessage":{"activity":{"enteredData":{"b64":"QQ="},"echoData":{"v":""}}}}}}',
      'loggedMessage.Developer.ActivityMessage.activity.enteredData.b64: expected standard padded base64'],
  ];
  for (const [line, message] of refusals) {
    assert.throws(() => decodeLine(line), { message }, line);
  }
  assert.ok(Object.is(parseJson('-0'), -0));
  assert.equal(parseJson('1e-99999999999'), 0);
});

test('numbers are written as serde_json writes them', () => {
  const cases = [[1, '1.0'], [0.1, '0.1'], [1e-7, '1e-7'], [1.5e-7, '1.5e-7'], [1e16, '1e16'],
    [1733500000.123456, '1733500000.123456'], [0.001, '0.001'], [123456789012345680000, '1.2345678901234568e20'],
    [-0, '-0.0'], [NaN, 'null']];
  for (const [x, written] of cases) assert.equal(numberJson(x), written, String(x));
});

test('a server-flavour log decodes and re-encodes byte for byte, and logLine writes it again', () => {
  for (const line of lines(read('crates/debugme-tools/testdata/synthetic.log'))) {
    assert.equal(encodeLine(decodeLine(line)), line);
  }
  const server = lines(read('fuzz/seeds/debugme_verify/server_flavour_session'));
  assert.ok(server.length >= 10);
  for (const line of server) {
    const decoded = decodeLine(line);
    assert.equal(encodeLine(decoded), line);
    const wire = decodeMessage(encodeMessage(decoded.message));
    assert.equal(logLine(wire, decoded.timestamp), line);
  }
});

test('the wire decoder refuses what wire.rs refuses', () => {
  const seenLine = lines(read('fuzz/seeds/debugme_verify/server_flavour_session')).map(decodeLine)
    .find((l) => l.message.type === 'Seen');
  const good = encodeMessage(seenLine.message);
  assert.deepEqual(decodeMessage(good), seenLine.message);
  const refusals = [
    [new Uint8Array([]), /AnyMessageP has none of its constructors/],
    // user (29) with an empty MsgSeenP
    [Uint8Array.from([0xea, 0x01, 0x00]), /MsgSeenP has none of its constructors/],
    // both user and developer
    [Uint8Array.from([0xea, 0x01, 0x00, 0xf2, 0x01, 0x00]), /AnyMessageP has fields of more than one constructor/],
    // a length beyond the bytes left
    [Uint8Array.from([0xea, 0x01, 0x7f]), /buffer underflow/],
    // a varint that never ends
    [Uint8Array.from(Array(11).fill(0xff)), /invalid varint/],
    // tag 0
    [Uint8Array.from([0x00]), /invalid tag value: 0/],
    // an activity without its elapsed time: user { activity_message { activity { seen_data "" } sig {ed25519 ""} } }
    [Uint8Array.from([0xea, 0x01, 0x0b, 0x22, 0x09, 0x32, 0x02, 0x0a, 0x00, 0x42, 0x03, 0x9a, 0x01, 0x00]), /required field ActSeenP.elapsed = 7 is missing/],
  ];
  for (const [bytes, message] of refusals) {
    assert.throws(() => decodeMessage(bytes), (e) => e instanceof WireError && message.test(e.message), toHex(bytes));
  }
  // A hash that is not 128 lowercase hex characters.
  const rejected = {
    side: 'user', type: 'Control',
    control: { tag: 'EnteredRejected', enteredRejected: { method: 'SHA512', value: new Uint8Array(128).fill(0x41) }, enteredLastAccepted: null },
    signature: { kind: 'Ed25519', bytes: new Uint8Array(64) },
  };
  assert.throws(() => decodeMessage(encodeMessage(rejected)), /hash value is not 128 lowercase hex ASCII characters/);
  // An elapsed time that is not finite.
  assert.throws(() => decodeMessage(encodeMessage({ ...seenLine.message, elapsedTime: NaN })), /elapsed time NaN is not a finite number/);
  // Unknown fields are skipped.
  const extra = new Uint8Array([...good, 0xf8, 0x0f, 0x01]);
  assert.deepEqual(decodeMessage(extra), seenLine.message);
});

test('the incremental API gives events, trusts nothing after a failure, and agrees with verifyLogText', async () => {
  const log = lines(read('fuzz/seeds/debugme_verify/server_flavour_session'));
  const session = new SessionVerifier({ gpg: noGpg });
  const events = [];
  for (const line of log) events.push(await session.pushLogLine(line));
  assert.deepEqual(events.map((e) => e.index), log.map((_, i) => i + 1));
  assert.ok(events.every((e) => e.trusted));
  assert.equal(events[0].kind, 'control');
  assert.equal(events[0].side, 'user');
  assert.equal(events[0].message.control.tag, 'SessionKey');
  assert.ok(events.some((e) => e.kind === 'seen' && e.message.output instanceof Uint8Array));
  assert.deepEqual(session.state(), { ...(await verifyLogText(log.join('\n'), { gpg: noGpg })), final: false });
  const verdict = await session.finish();
  assert.equal(verdict.verified, true);
  assert.equal(session.state().final, true);

  // The same session over the wire: the same verdict, message by message.
  const wire = new SessionVerifier({ gpg: noGpg });
  for (const line of log) {
    const event = await wire.pushWire(encodeMessage(decodeLine(line).message));
    assert.ok(event.trusted, `message ${event.index}`);
  }
  assert.equal((await wire.finish()).verified, true);

  // A forged message: it and all that follows are untrusted, and the verdict names it.
  const forged = new SessionVerifier({ gpg: noGpg });
  const lastSeen = log.findLastIndex((l) => l.includes('seenData'));
  const trusted = [];
  for (const [i, line] of log.entries()) {
    const changed = i === lastSeen ? line.replace(/"seenData":\{"v":"./, (m) => m.slice(0, -1) + (m.endsWith('x') ? 'y' : 'x')) : line;
    trusted.push((await forged.pushWire(encodeMessage(decodeLine(changed).message))).trusted);
  }
  assert.deepEqual(trusted, log.map((_, i) => i < lastSeen));
  const state = forged.state();
  assert.equal(state.verified, false);
  assert.equal(state.line, lastSeen + 1);
  assert.match(state.error, new RegExp(`^message ${lastSeen + 1}: `));

  // Frames pushed as they arrive, without waiting for each verdict, are verified in order.
  const eager = new SessionVerifier({ gpg: noGpg });
  const pending = log.map((line) => eager.pushWire(encodeMessage(decodeLine(line).message)));
  const verdictAfter = eager.finish();
  assert.deepEqual((await Promise.all(pending)).map((e) => [e.index, e.trusted]), log.map((_, i) => [i + 1, true]));
  assert.equal((await verdictAfter).verified, true);

  // A frame that does not decode fails the session at that message.
  const garbled = new SessionVerifier({ gpg: noGpg });
  const event = await garbled.pushWire(new Uint8Array([0xea, 0x01]));
  assert.equal(event.kind, 'invalid');
  assert.equal(garbled.state().error.startsWith('message 1: failed to decode the message: '), true);
});

test('invalid UTF-8 is the verdict only after the lines before it verify', async () => {
  const log = read('fuzz/seeds/debugme_verify/server_flavour_session');
  const bytes = new Uint8Array([...new TextEncoder().encode(log), 0xff, 0x0a]);
  const verdict = await verifyLogBytes(bytes, { gpg: noGpg });
  const n = log.split('\n').length;
  assert.equal(verdict.error, `line ${n}: failed to parse a line of the log: invalid UTF-8`);
});

test('every L frame among the wire fuzz seeds decodes and encodes back to the same bytes', () => {
  const dir = new URL('fuzz/seeds/debugme_wire/', root);
  let frames = 0;
  for (const name of readdirSync(dir)) {
    const bytes = new Uint8Array(readFileSync(new URL(name, dir)));
    if (bytes[0] !== 0x4c) continue;
    const payload = bytes.subarray(1);
    assert.deepEqual(encodeMessage(decodeMessage(payload)), payload, name);
    frames++;
  }
  assert.ok(frames >= 10, `${frames} frames`);
});

test('hostile bytes never crash a decoder or the verifier: they are refused with a reason', async () => {
  let seed = 0x2545f491;
  const next = (n) => {
    seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return seed % n;
  };
  const frames = readdirSync(new URL('fuzz/seeds/debugme_wire/', root))
    .map((name) => new Uint8Array(readFileSync(new URL(`fuzz/seeds/debugme_wire/${name}`, root))));
  const log = read('fuzz/seeds/debugme_verify/server_flavour_session');
  for (let i = 0; i < 2000; i++) {
    const bytes = frames[next(frames.length)].slice(1);
    for (let k = 0; k < 1 + next(4); k++) if (bytes.length) bytes[next(bytes.length)] = next(256);
    try {
      decodeMessage(bytes.subarray(0, next(bytes.length + 1)));
    } catch (error) {
      assert.ok(error instanceof WireError, String(error));
    }
  }
  for (let i = 0; i < 300; i++) {
    const chars = [...log];
    for (let k = 0; k < 1 + next(6); k++) chars[next(chars.length)] = String.fromCharCode(next(0x80));
    const verdict = await verifyLogText(chars.join(''), { gpg: noGpg });
    assert.equal(typeof verdict.verified, 'boolean');
    if (!verdict.verified) assert.match(verdict.error, /^line \d+: /);
  }
});
