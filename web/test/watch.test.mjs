// The watch page's own pieces, without a browser: what it draws of hostile output, the size
// it infers, the asciicast it builds (as `kanava export --asciicast` does), the frames it
// reads, and the status it words.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { StringSequenceFilter } from '../debug-me/watch/sequences.js';
import { asciicast } from '../debug-me/watch/asciicast.js';
import { TerminalSize, MAX_COLS, MAX_ROWS } from '../debug-me/watch/terminal-size.js';
import { decodeFrame, encodeFrame, sessionIdOf } from '../debug-me/watch/connection.js';
import { statusText } from '../debug-me/watch/describe.js';

const bytes = (text) => (typeof text === 'string' ? new TextEncoder().encode(text) : Uint8Array.from(text));
const latin1 = (text) => Uint8Array.from([...text].map((c) => c.charCodeAt(0)));

function all(chunks) {
  const filter = new StringSequenceFilter();
  return Buffer.concat(chunks.map((chunk) => filter.filter(chunk)));
}

test('string sequences are dropped and the rest kept, as kanava replay does (terminal.rs vectors)', () => {
  const attack = latin1('\x1b]0;pwned\x07\x1b[31mred\x1b[0m\x1b]52;c;aGk=\x1b\\ok\x1bP+q\x1b\\');
  assert.deepEqual(all([attack]), Buffer.from(latin1('\x1b[31mred\x1b[0mok')));
  const c1 = bytes('a\u009d0;t\u009cb\u009fx\u0007é\u00a0');
  assert.deepEqual(all([c1]), Buffer.from(bytes('abé\u00a0')));
  assert.deepEqual(all([latin1('plain \x1bc reset\r\n')]), Buffer.from(latin1('plain \x1bc reset\r\n')));
  assert.deepEqual(all([latin1('x\x1b'), latin1(']0;ti'), latin1('tle\x1b'), latin1('\\y')]), Buffer.from('xy'));
  assert.deepEqual(all([latin1('x\x1b'), latin1('[1mz')]), Buffer.from(latin1('x\x1b[1mz')));
  assert.deepEqual(all([[0xc2], latin1('\x9d2;t\x07!'), [0xc2], [0xa9]].map((c) => Uint8Array.from(c))), Buffer.from(bytes('!©')));
});

test('an asciicast has the header, cumulative times, characters joined across chunks', () => {
  const outputs = [
    { time: 0, bytes: bytes('caf') },
    { time: 1.5, bytes: Uint8Array.from([0xc3]) },
    { time: 1.7, bytes: Uint8Array.from([0xa9, 0x20, 0x1b, 0x5d, 0x30, 0x3b, 0x74, 0x07, 0x21]) },
    { time: 2.0000004, bytes: Uint8Array.from([0xf0, 0x9f]) },
  ];
  const lines = asciicast(outputs, { cols: 132, rows: 50 }, 1700000000.75).trimEnd().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines[0], { version: 2, width: 132, height: 50, timestamp: 1700000000 });
  assert.deepEqual(lines.slice(1), [[0, 'o', 'caf'], [1.7, 'o', 'é !'], [2, 'o', '\ufffd']]);
  assert.equal(asciicast([], { cols: 80, rows: 24 }, null), '{"version":2,"width":80,"height":24}\n');
});

test('the terminal size comes from cursor moves, size reports and wide lines, bounded', () => {
  const size = new TerminalSize();
  assert.equal(size.push(bytes('short line\r\n')), false);
  assert.deepEqual([size.cols, size.rows], [80, 24]);
  assert.equal(size.push(bytes('\x1b[40;100H\r\n')), true);
  assert.deepEqual([size.cols, size.rows], [100, 40]);
  size.push(bytes(`${'é'.repeat(120)}\r\n`));
  assert.equal(size.cols, 120, 'a UTF-8 character is one column');
  size.push(bytes('\x1b[8;50;1'));
  size.push(bytes('30t'));
  assert.deepEqual([size.cols, size.rows], [130, 50], 'a report split across chunks');
  size.push(bytes('\x1b[99999;99999H'));
  assert.deepEqual([size.cols, size.rows], [MAX_COLS, MAX_ROWS]);
});

test('frames: the tags the server sends, and session ids from the page path only', () => {
  assert.deepEqual(decodeFrame(bytes('R"93b88cd2-3cd0-44d2-ac6f-83f3dc9bda50"')), { tag: 'R', payload: '93b88cd2-3cd0-44d2-ac6f-83f3dc9bda50' });
  assert.deepEqual(decodeFrame(bytes('V["1"]')).payload, ['1']);
  assert.equal(decodeFrame(bytes('D')).tag, 'D');
  assert.deepEqual([...decodeFrame(Uint8Array.from([0x4c, 1, 2])).payload], [1, 2]);
  assert.throws(() => decodeFrame(bytes('Zx')), /unknown frame/);
  assert.throws(() => decodeFrame(new Uint8Array()), /empty/);
  assert.deepEqual([...encodeFrame('M', '{}')], [0x4d, 0x7b, 0x7d]);
  assert.equal(sessionIdOf('/debug-me/93b88cd2-3cd0-44d2-ac6f-83f3dc9bda50'), '93b88cd2-3cd0-44d2-ac6f-83f3dc9bda50');
  for (const bad of ['/debug-me/', '/debug-me/x', '/debug-me/93b88cd2-3cd0-44d2-ac6f-83f3dc9bda50/../x', '/other/93b88cd2-3cd0-44d2-ac6f-83f3dc9bda50']) {
    assert.equal(sessionIdOf(bad), null, bad);
  }
});

test('the status names the count, the keys and the signer, or the failing message', () => {
  const verdict = {
    verified: true,
    lines: 1204,
    keys: [
      { role: 'user', key: '2955aa', gpg_signer: null },
      { role: 'developer', key: 'ab12cd', gpg_signer: 'Fixture Dev <fx@example.org>\x1b[2J' },
      { role: 'developer', key: 'ee00ff', gpg_signer: null },
    ],
  };
  assert.equal(
    statusText(verdict, new Map([['ab12cd', 'E673FFFF']])),
    'verified: 1,204 messages, chain intact, user key 2955…, developer Fixture Dev <fx@example.org>^[[2J (GnuPG E673…, session key ab12…), developer key ee00… (no verified GnuPG signature)',
  );
  assert.equal(
    statusText({ verified: false, line: 7, error: 'message 7: invalid signature' }),
    'failed at message 7: invalid signature',
  );
});

test('control events are worded for people, with the verdict\'s signer and hostile text inert', async () => {
  const { controlText } = await import('../debug-me/watch/describe.js');
  const verdict = { keys: [{ role: 'developer', key: 'ab12cd', gpg_signer: 'Dev <dev@example.org>' }] };
  const control = (side, action) => ({ side, type: 'Control', control: action });
  const key = (keyHex, gpgSigned) => ({ tag: gpgSigned ? 'GpgSigned' : 'UnSigned', keyHex, gpgSigned });
  const say = (side, action) => controlText(control(side, action), side, verdict);
  assert.equal(say('user', { tag: 'SessionKey', key: key('2955aa', false) }), "user's session key 2955…");
  assert.equal(say('developer', { tag: 'SessionKey', key: key('ab12cd', true) }), "developer's session key ab12…, GnuPG-signed by Dev <dev@example.org>");
  assert.equal(say('developer', { tag: 'SessionKey', key: key('ff00ee', true) }), "developer's session key ff00…, with a GnuPG signature that did not verify");
  assert.equal(say('developer', { tag: 'SessionKey', key: key('ee00ff', false) }), "developer's session key ee00…, not GnuPG-signed");
  assert.equal(say('user', { tag: 'SessionKeyAccepted', keyHex: 'ab12cd' }), 'user accepted developer key ab12…: it may type');
  assert.equal(say('user', { tag: 'SessionKeyRejected', keyHex: 'ee00ff' }), 'user refused developer key ee00…');
  assert.equal(say('user', { tag: 'EnteredRejected' }), 'user rejected input that did not follow the terminal');
  const hostile = say('developer', { tag: 'ChatMessage', sender: new TextEncoder().encode('dev\u202e'), text: new TextEncoder().encode('hi\x1b]0;x\x07\nthere') });
  assert.equal(hostile, 'chat dev\ufffd: hi^[]0;x^G there');
});

test('any bytes, in any chunks: the size stays bounded and no string sequence gets through', () => {
  // A small deterministic generator, biased towards the bytes that start and end sequences.
  let seed = 0x2545f491;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const interesting = [0x1b, 0x5d, 0x50, 0x5b, 0x07, 0x5c, 0xc2, 0x9d, 0x9c, 0x3b, 0x38, 0x39, 0x48, 0x74, 0x0a];
  for (let round = 0; round < 200; round++) {
    const size = new TerminalSize();
    const filter = new StringSequenceFilter();
    const shown = [];
    for (let chunk = 0; chunk < 20; chunk++) {
      const bytes = new Uint8Array(next() % 64);
      for (let i = 0; i < bytes.length; i++) {
        bytes[i] = next() % 3 === 0 ? next() % 256 : interesting[next() % interesting.length];
      }
      const out = filter.filter(bytes);
      size.push(out);
      shown.push(...out);
    }
    assert.ok(size.cols >= 80 && size.cols <= MAX_COLS && size.rows >= 24 && size.rows <= MAX_ROWS);
    for (let i = 0; i + 1 < shown.length; i++) {
      const pair = (shown[i] === 0x1b && [0x5d, 0x50, 0x58, 0x5e, 0x5f].includes(shown[i + 1]))
        || (shown[i] === 0xc2 && [0x90, 0x98, 0x9d, 0x9e, 0x9f].includes(shown[i + 1]));
      assert.ok(!pair, `a string sequence introducer got through in round ${round}`);
    }
  }
});
