// Reconnecting waits 0.5 s, doubling to 15 s, with jitter.
import { test } from "node:test";
import assert from "node:assert/strict";

import { BACKOFF_MAX, backoff } from "../src/connection.js";

test("the wait doubles from half a second to fifteen, jitter taking off at most a quarter", () => {
  const none = () => 0;
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 40].map((n) => backoff(n, none)),
    [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000],
  );
  const most = () => 0.999999;
  assert.equal(backoff(0, most), 375);
  assert.equal(backoff(10, most), Math.round(BACKOFF_MAX * 0.75));
  for (let i = 0; i < 100; i++) {
    const wait = backoff(3);
    assert.ok(wait >= 3000 && wait <= 4000, `${wait}`);
  }
});
