// The composer's commands parse as the SSH chat's do.
import { test } from "node:test";
import assert from "node:assert/strict";

import { parse, roomName } from "../src/commands.js";

test("text is a message; a doubled slash sends one slash", () => {
  assert.deepEqual(parse("hello /join x"), { say: "hello /join x" });
  assert.deepEqual(parse("//shrug"), { say: "/shrug" });
});

test("commands and their arguments", () => {
  assert.deepEqual(parse("/join #dev"), { command: "join", room: "dev" });
  assert.deepEqual(parse("/join dev"), { command: "join", room: "dev" });
  assert.deepEqual(parse("/part"), { command: "part" });
  assert.deepEqual(parse("/who"), { command: "who" });
  assert.deepEqual(parse("/names"), { command: "who" });
  assert.deepEqual(parse("/help"), { command: "help" });
  assert.deepEqual(parse("/rooms"), { command: "rooms" });
  assert.deepEqual(parse("/me waves  at you"), { command: "me", action: "waves  at you" });
  assert.deepEqual(parse("/msg @bob hi  there\nsecond"), {
    command: "msg",
    to: "bob",
    text: "hi  there\nsecond",
  });
  assert.deepEqual(parse("/topic"), { command: "topic" });
  assert.deepEqual(parse("/topic release on Friday"), { command: "topic", text: "release on Friday" });
  assert.deepEqual(parse("/key"), { command: "keys" });
  assert.deepEqual(parse("/key add ssh-ed25519 AAAA comment"), {
    command: "key_add",
    key: "ssh-ed25519 AAAA comment",
  });
  assert.deepEqual(parse("/key remove SHA256:abc"), { command: "key_remove", fingerprint: "SHA256:abc" });
});

test("bad commands get the usage or the reason", () => {
  assert.deepEqual(parse("/join"), { error: "usage: /join ROOM" });
  assert.deepEqual(parse("/join a b"), { error: "usage: /join ROOM" });
  assert.deepEqual(parse("/join #"), { error: "usage: /join ROOM" });
  assert.deepEqual(parse("/part now"), { error: "usage: /part" });
  assert.deepEqual(parse("/msg bob"), { error: "usage: /msg NAME TEXT" });
  assert.deepEqual(parse("/me"), { error: "usage: /me ACTION" });
  assert.deepEqual(parse("/key remove"), {
    error: "usage: /key, /key add PUBLIC-KEY, /key remove FINGERPRINT",
  });
  assert.deepEqual(parse("/frobnicate"), { error: "unknown command /frobnicate; /help lists them" });
  assert.deepEqual(parse("/"), { error: "unknown command /; /help lists them" });
});

test("a room is typed with or without #", () => {
  assert.equal(roomName("#dev"), "dev");
  assert.equal(roomName("dev"), "dev");
});
