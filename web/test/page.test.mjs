// The page's static parts: what the strict CSP allows, the DOM contract's fixed elements, and no
// script that could turn text into markup or code.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");
const html = readFileSync(join(web, "index.html"), "utf8");
const sources = readdirSync(join(web, "src")).filter((f) => f.endsWith(".js"));

test("no inline script, style or handler (the CSP refuses them)", () => {
  for (const script of html.matchAll(/<script\b[^>]*>/g)) {
    assert.match(script[0], /\bsrc="\/src\/[\w-]+\.js"/, `inline script: ${script[0]}`);
  }
  assert.doesNotMatch(html, /<style\b/i);
  assert.doesNotMatch(html, /\sstyle=/i);
  assert.doesNotMatch(html, /\son[a-z]+=/i);
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//i, "nothing from another origin");
});

test("every module is preloaded by the page, and only modules that exist", () => {
  const preloaded = [...html.matchAll(/<link rel="modulepreload" href="\/src\/([\w-]+\.js)">/g)].map((m) => m[1]);
  const expected = sources.filter((f) => f !== "app.js").sort();
  assert.deepEqual(preloaded.sort(), expected);
  assert.match(html, /<script type="module" src="\/src\/app\.js"><\/script>/);
  assert.match(html, /<link rel="stylesheet" href="\/src\/app\.css">/);
});

test("the contract's fixed elements are in the page", () => {
  for (const fixed of [
    /<form id="login"/,
    /<label for="login-name">Name<\/label>/,
    /<input id="login-name"/,
    /<label for="login-room">Room<\/label>/,
    /<input id="login-room"/,
    /<button type="submit" id="login-submit">Enter<\/button>/,
    /<p id="login-error" role="alert">/,
    /<nav aria-label="Rooms"/,
    /<p id="topic">/,
    /<ol id="messages" role="log" aria-label="Messages" aria-live="polite">/,
    /<ul id="people" aria-label="People">/,
    /<form id="composer">/,
    /<label for="message"[^>]*>Message<\/label>/,
    /<textarea id="message"/,
    /<p id="status" role="status">/,
    /<details id="identity">\s*<summary>Your key<\/summary>/,
    /<code id="identity-key">/,
  ]) {
    assert.match(html, fixed);
  }
});

test("no script turns data into markup or code", () => {
  for (const file of sources) {
    const code = readFileSync(join(web, "src", file), "utf8");
    for (const sink of [/innerHTML/, /outerHTML/, /insertAdjacentHTML/, /document\.write/, /\beval\(/, /new Function/, /setAttribute\("style"/]) {
      assert.doesNotMatch(code, sink, `${file} uses ${sink}`);
    }
  }
});

test("the page is far below its budget of 150 KB compressed", () => {
  const files = ["index.html", ...readdirSync(join(web, "src")).map((f) => join("src", f))];
  const total = files.reduce((n, f) => n + gzipSync(readFileSync(join(web, f))).length, 0);
  assert.ok(total < 50 * 1024, `${total} bytes compressed`);
});
