// A room's rows: no seq twice, paging before the oldest, unread counts, joins shown once.
import { test } from "node:test";
import assert from "node:assert/strict";

import { MAX_HELD, Room } from "../src/rooms.js";

const event = (seq, fields = {}) => ({
  type: "event",
  room: "dev",
  seq,
  time: 1765000000000 + seq,
  kind: "text",
  from: "bob",
  verified: true,
  text: `m${seq}`,
  ...fields,
});

test("a seq is shown once, whether it comes live, resumed or paged", () => {
  const room = new Room("dev");
  for (const seq of [5, 6, 6, 7, 4]) room.addEvent(event(seq), true);
  assert.deepEqual(room.rows.map((r) => r.seq), [5, 6, 7]);
  assert.equal(room.high, 7);
  assert.equal(room.oldest(), 5);
  assert.equal(room.addOlder([event(2), event(3), event(5)], true), 2);
  assert.deepEqual(room.rows.map((r) => r.seq), [2, 3, 5, 6, 7]);
  assert.equal(room.more, true);
  room.addOlder([event(1)], false);
  assert.equal(room.more, false);
  assert.deepEqual(room.rows.map((r) => r.seq), [1, 2, 3, 5, 6, 7]);
});

test("rows of each kind", () => {
  const room = new Room("dev");
  room.addEvent(event(1, { kind: "emote", text: "waves" }), true);
  room.addEvent(event(2, { kind: "binary", text: undefined, size: 3, verified: false }), true);
  room.addEvent(event(3, { kind: "join", text: undefined }), true);
  assert.deepEqual(
    room.rows.map((r) => [r.kind, r.text, r.size, r.verified]),
    [
      ["emote", "waves", 0, true],
      ["binary", "", 3, false],
      ["join", "", 0, true],
    ],
  );
});

test("unread counts what arrives in a room you are not looking at", () => {
  const room = new Room("dev", 10);
  room.addEvent(event(10), false);
  room.addEvent(event(11), false);
  room.addEvent(event(12, { kind: "join" }), false);
  room.addEvent(event(13, { kind: "binary", size: 1 }), false);
  assert.equal(room.unread, 2);
  assert.equal(room.rows.filter((r) => r.fresh).length, 3);
  room.markRead();
  assert.equal(room.unread, 0);
  assert.equal(room.readMark, 13);
  room.addEvent(event(14), true);
  assert.equal(room.readMark, 14, "what you look at is read");
  const unseen = new Room("new");
  unseen.addEvent(event(1), false);
  assert.equal(unseen.unread, 0, "history on entry is not unread");
});

test("a reset drops the rows; what comes next is shown", () => {
  const room = new Room("dev");
  room.addEvent(event(50), true);
  room.reset();
  assert.equal(room.rows.length, 0);
  assert.ok(room.addEvent(event(3), true));
  assert.equal(room.high, 3);
});

test("presence changes become join and leave rows; a stored join is shown once", () => {
  const room = new Room("dev");
  room.setMembers([{ name: "alice", verified: true }], false);
  assert.equal(room.rows.length, 0, "the first list is not a change");
  const rows = room.setMembers(
    [
      { name: "bob", verified: true },
      { name: "web", verified: false },
    ],
    true,
  );
  assert.deepEqual(
    rows.map((r) => [r.kind, r.from, r.verified]),
    [
      ["join", "bob", true],
      ["join", "web", false],
      ["leave", "alice", true],
    ],
  );
  room.addEvent(event(1, { kind: "join", from: "bob" }), true);
  assert.deepEqual(
    room.rows.map((r) => [r.kind, r.from, r.seq]),
    [
      ["join", "web", undefined],
      ["leave", "alice", undefined],
      ["join", "bob", 1],
    ],
  );
  room.addEvent(event(2, { kind: "join", from: "carol" }), true);
  room.setMembers([...room.members, { name: "carol", verified: true }], true);
  assert.equal(room.rows.filter((r) => r.from === "carol").length, 1);
});

test("what is held is capped; the oldest go and paging can bring them back", () => {
  const room = new Room("big");
  for (let seq = 1; seq <= MAX_HELD + 5; seq++) room.addEvent(event(seq), true);
  assert.equal(room.rows.length, MAX_HELD);
  assert.equal(room.oldest(), 6);
  assert.equal(room.more, true);
  assert.equal(room.seqs.has(5), false);
});
