// The /verify page's chain drawing data (web/debug-me/verify/marks.js, chain.js): marks by kind,
// links resolved through the log's hashes, rejected Entered found, trust cut at the failure, and
// a layout in which consecutive lines are always neighbours.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodeLine, verifyLogText } from '../debug-me/verifier/index.js';
import { MarkCollector } from '../debug-me/verify/marks.js';
import { centre, columnsFor, describe } from '../debug-me/verify/chain.js';

const bytes = (text) => new TextEncoder().encode(text);
const hash = (hex) => ({ method: 'SHA512', value: bytes(hex) });

test("a real user log's marks follow the pointers it writes", () => {
  const log = readFileSync(new URL('../../crates/debugme/testdata/appendix-a.log', import.meta.url), 'utf8');
  const collector = new MarkCollector();
  log.split('\n').filter(Boolean).forEach((line, at) => collector.add(at + 1, decodeLine(line)));
  const marks = collector.finish(null);
  assert.deepEqual(marks.map((m) => [m.line, m.kind, m.side, m.follows, m.trusted]), [
    [1, 'control', 'user', null, true],
    [2, 'seen', 'user', null, true],
    [3, 'seen', 'user', 2, true],
  ]);
  assert.equal(marks[0].what, 'SessionKey');
});

test("a server's log, which writes no pointers, is linked as the verifier recovered its chain", async () => {
  const log = readFileSync(new URL('../../fuzz/seeds/debugme_verify/server_flavour_session', import.meta.url), 'utf8');
  const collector = new MarkCollector();
  log.split('\n').filter(Boolean).forEach((line, at) => collector.add(at + 1, decodeLine(line)));
  const written = collector.marks.filter((m) => m.kind !== 'control');
  assert.ok(written.length > 2 && written.every((m) => m.follows === null && m.followsEntered === null));
  const chain = new Map();
  const verdict = await verifyLogText(log, { onChain: (line, hash, pointers) => chain.set(line, { hash, pointers }) });
  assert.equal(verdict.verified, true);
  collector.link(chain);
  const activities = collector.finish(null).filter((m) => m.kind !== 'control');
  assert.equal(chain.size, activities.length);
  // The first activity follows nothing; every later one follows an earlier line.
  assert.equal(activities[0].follows, null);
  for (const mark of activities.slice(1)) {
    assert.ok(mark.follows !== null && mark.follows < mark.line, JSON.stringify(mark));
  }
});

test('an Entered the user rejects is drawn as rejected, and nothing from the failure on is trusted', () => {
  const collector = new MarkCollector();
  const seen = { side: 'user', type: 'Seen', prevActivity: null, prevEntered: null };
  const entered = { side: 'developer', type: 'Entered', prevActivity: hash('a2'), prevEntered: null };
  const rejection = { side: 'user', type: 'Control', control: { tag: 'EnteredRejected', enteredRejected: hash('a3'), enteredLastAccepted: null } };
  collector.add(1, { message: seen, hash: hash('a1') });
  collector.add(2, { message: { ...seen, prevActivity: hash('a1') }, hash: hash('a2') });
  collector.add(3, { message: entered, hash: hash('a3') });
  collector.add(4, { message: rejection, hash: null });
  collector.add(5, null);
  const marks = collector.finish(4);
  assert.deepEqual(marks.map((m) => [m.kind, m.follows, m.trusted]), [
    ['seen', null, true],
    ['seen', 1, true],
    ['rejected', 2, true],
    ['control', null, false],
    ['invalid', null, false],
  ]);
  assert.equal(describe(marks, 4), 'Chain of 5 lines: 2 Seen, 0 Entered, 1 rejected Entered, 1 control, 1 line that is not a log message; verification fails at line 4');
});

test('consecutive lines are neighbours in the drawing, whatever its length', () => {
  for (const n of [1, 7, 25, 26, 3021, 50000]) {
    const columns = columnsFor(n);
    assert.ok(columns >= 1 && columns <= 100, `${n}: ${columns}`);
    for (let at = 1; at < Math.min(n, 500); at += 1) {
      const [x0, y0] = centre(at - 1, columns);
      const [x1, y1] = centre(at, columns);
      assert.equal(Math.abs(x1 - x0) + Math.abs(y1 - y0), 12, `${n}: ${at}`);
    }
  }
});
