// Hostile text is shown inert: controls visible, bidi neutralised, only http(s) links.
import { test } from "node:test";
import assert from "node:assert/strict";

import { MAX_SHOWN, clock, mentionTest, sanitize, segments, shownName, shownText } from "../src/text.js";

test("controls are shown visibly and bidi controls neutralised, as in the SSH chat", () => {
  const attack = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\u009b31m\r";
  assert.equal(sanitize(attack), "^[]0;pwned^G^[[2J^[[31mred\ufffd31m^M");
  assert.equal(sanitize("a\u202eb\u2066c\u200fd\u061ce"), "a\ufffdb\ufffdc\ufffdd\ufffde");
  assert.equal(sanitize("tab\there\nnext"), "tab\there\nnext");
  assert.equal(sanitize("\x7f\x00"), "^?^@");
  assert.equal(sanitize("日本 ✓ 👍"), "日本 ✓ 👍");
  const safe = sanitize(attack);
  assert.equal(sanitize(safe), safe, "sanitising twice changes nothing");
  for (let code = 0; code < 0x100; code++) {
    const shown = sanitize(String.fromCharCode(code));
    assert.ok(
      [...shown].every((c) => c === "\n" || c === "\t" || !/[\p{Cc}]/u.test(c)),
      `U+${code.toString(16)} shown as ${JSON.stringify(shown)}`,
    );
  }
});

test("names: unverified senders get ~, controls in names are neutralised", () => {
  assert.equal(shownName("alice", true), "alice");
  assert.equal(shownName("web", false), "~web");
  assert.equal(shownName("a\nb\u202ec", false), "~a b\ufffdc");
});

test("only http and https URLs become links", () => {
  assert.deepEqual(segments("see https://example.com/a?b=1, and javascript:alert(1)"), [
    { text: "see " },
    { text: "https://example.com/a?b=1", href: "https://example.com/a?b=1" },
    { text: ", and javascript:alert(1)" },
  ]);
  assert.deepEqual(segments("(http://x.test/p)."), [
    { text: "(" },
    { text: "http://x.test/p", href: "http://x.test/p" },
    { text: ")." },
  ]);
  assert.deepEqual(segments("javascript://example.com/%0aalert(1)"), [
    { text: "javascript://example.com/%0aalert(1)" },
  ]);
  assert.deepEqual(segments("data:text/html,<script>x</script> <a href=x>"), [
    { text: "data:text/html,<script>x</script> <a href=x>" },
  ]);
  assert.deepEqual(segments("HTTPS://Example.COM"), [
    { text: "HTTPS://Example.COM", href: "https://example.com/" },
  ]);
  assert.deepEqual(segments("http://"), [{ text: "http://" }]);
  assert.deepEqual(segments(""), []);
});

test("a long message is cut with a note of what was left out", () => {
  const long = "x".repeat(MAX_SHOWN + 10);
  assert.equal(shownText(long), `${"x".repeat(MAX_SHOWN)}… [10 more characters]`);
  const line = "y".repeat(4096);
  assert.equal(shownText(line), line);
});

test("a mention is the name as a whole word, in any case", () => {
  const mentions = mentionTest("alice");
  assert.ok(mentions("hi alice"));
  assert.ok(mentions("Alice: look"));
  assert.ok(mentions("@ALICE!"));
  assert.ok(!mentions("malice"));
  assert.ok(!mentions("alice_2 is here"));
  const dotted = mentionTest("a.b");
  assert.ok(dotted("hey a.b"));
  assert.ok(!dotted("hey axb"), "a dot in a name is not a wildcard");
  assert.ok(!mentionTest("")("anything"));
});

test("a time is shown as hours and minutes, with its date when not today", () => {
  const now = new Date(2026, 11, 7, 15, 0).getTime();
  assert.equal(clock(new Date(2026, 11, 7, 9, 5).getTime(), now), "09:05");
  assert.equal(clock(new Date(2026, 11, 6, 23, 59).getTime(), now), "2026-12-06 23:59");
});
