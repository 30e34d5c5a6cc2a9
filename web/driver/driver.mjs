// A small, generic Playwright driver for kanava's Chromium end-to-end tests
// (kanava/tests/e2e/web_browser.rs). It exists so that the Rust tests can drive real pages without
// a JavaScript test runner: one JSON command per line on stdin, one JSON answer per line on
// stdout, in order. Each page lives in its own browser context (its own storage, so its own key).
//
// Command: {"cmd": NAME, "page": "alice", ...}. Answer: {"ok": true, "value": ...} or
// {"ok": false, "error": "..."}. Targets of fill/press/click/text/...: {"role", "name"} (by
// accessible role and exact name), {"label"} (by accessible label) or {"css"}.
// Chromium is Debian's (/usr/bin/chromium); no browser is ever downloaded.

import { createInterface } from 'node:readline';
import { mkdirSync, readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { chromium } from 'playwright-core';

const DEFAULT_TIMEOUT = 10_000;
/** How often waitFor checks its condition. */
const POLL_MS = 25;

// The test server's certificate is self-signed. Chromium ignores that at the TLS layer here;
// contexts' ignoreHTTPSErrors alone makes Chromium fail each new connection's handshake and
// restart its request, and a page whose files come over many short connections (every page
// response closes its connection) can run out of restarts (ERR_TOO_MANY_RETRIES) when the
// machine is loaded.
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--ignore-certificate-errors'],
});

/** Open pages by name: {context, page, console: [], violations: [], errors: [], dialogs: []}. */
const pages = new Map();

function entry(name) {
  const found = pages.get(name);
  if (!found) throw new Error(`no page named ${JSON.stringify(name)}`);
  return found;
}

function locate(page, target) {
  if (!target) throw new Error('a target is needed: {role,name}, {label} or {css}');
  let locator;
  if (target.role) locator = page.getByRole(target.role, { name: target.name, exact: true });
  else if (target.label) locator = page.getByLabel(target.label, { exact: true });
  else if (target.css) locator = page.locator(target.css);
  else throw new Error(`bad target ${JSON.stringify(target)}`);
  if (target.hasText !== undefined) locator = locator.filter({ hasText: target.hasText });
  return locator;
}

// The source of an expression calling the function source `expression` with the JSON `arg`
// (evaluated by the DevTools protocol, which the page's CSP does not govern).
function call(expression, arg) {
  return `(${expression})(${JSON.stringify(arg)})`;
}

// Runs in every page before its own scripts: records CSP violations through a binding (a
// binding is not script the page's policy governs), so that a test can assert there were none.
function reportViolations() {
  document.addEventListener('securitypolicyviolation', (event) => {
    window.__kanavaViolation({
      directive: event.violatedDirective,
      blocked: event.blockedURI,
      source: event.sourceFile,
      line: event.lineNumber,
      sample: event.sample,
    });
  });
}

// A file to choose or drop, as Playwright takes it: {path, name, mimeType} read from disk.
function payload({ path, name, mimeType = 'application/octet-stream' }) {
  return { name: name ?? basename(path), mimeType, buffer: readFileSync(path) };
}

const commands = {
  // With `clock`, the page's timers run on Playwright's clock (time still flows; fastForward
  // jumps it), for what a page only does after a long wait.
  async open({ page: name, url, viewport = [1280, 800], colorScheme = 'light', clock = false }) {
    if (pages.has(name)) throw new Error(`page ${name} is already open`);
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: viewport[0], height: viewport[1] },
      colorScheme,
    });
    const record = { context, console: [], violations: [], errors: [], dialogs: [] };
    await context.exposeBinding('__kanavaViolation', (_source, violation) => {
      record.violations.push(violation);
    });
    await context.addInitScript(reportViolations);
    if (clock) await context.clock.install();
    const page = await context.newPage();
    page.setDefaultTimeout(DEFAULT_TIMEOUT);
    page.on('console', (message) => {
      record.console.push({ type: message.type(), text: message.text() });
    });
    page.on('pageerror', (error) => record.errors.push(String(error)));
    page.on('dialog', (dialog) => {
      record.dialogs.push({ type: dialog.type(), message: dialog.message() });
      dialog.dismiss().catch(() => {});
    });
    record.page = page;
    pages.set(name, record);
    return url ? commands.goto({ page: name, url }) : null;
  },

  async goto({ page, url }) {
    const response = await entry(page).page.goto(url, { waitUntil: 'load' });
    return response && { status: response.status(), headers: await response.allHeaders() };
  },

  async reload({ page }) {
    const response = await entry(page).page.reload({ waitUntil: 'load' });
    return response && { status: response.status() };
  },

  async fill({ page, target, value }) {
    await locate(entry(page).page, target).fill(value);
  },

  async click({ page, target }) {
    await locate(entry(page).page, target).click();
  },

  async focus({ page, target }) {
    await locate(entry(page).page, target).focus();
  },

  // Presses `key` (Playwright's names: "Enter", "Shift+Enter", "Tab") in `target`, or wherever
  // the focus is when there is no target.
  async press({ page, target, key }) {
    const p = entry(page).page;
    if (target) await locate(p, target).press(key);
    else await p.keyboard.press(key);
  },

  // Types `text` key by key wherever the focus is, as a person at a keyboard would.
  async type({ page, text }) {
    await entry(page).page.keyboard.type(text);
  },

  // Waits until the first element matching `target` is in `state` (default visible).
  async wait({ page, target, state = 'visible', timeout = DEFAULT_TIMEOUT }) {
    await locate(entry(page).page, target).first().waitFor({ state, timeout });
  },

  // Waits until `expression` (a JavaScript function source, called with `arg`) returns a truthy
  // value in the page; answers that value. Polls from here rather than with waitForFunction,
  // which evaluates its predicate with eval() and so trips the page's CSP. A navigation during
  // the wait (a reload, a reconnect) only makes the next check run in the new document.
  async waitFor({ page, expression, arg = null, timeout = DEFAULT_TIMEOUT }) {
    const p = entry(page).page;
    const deadline = Date.now() + timeout;
    let last = null;
    for (;;) {
      try {
        const value = await p.evaluate(call(expression, arg));
        if (value) return value;
        last = value;
      } catch (error) {
        last = String(error && error.message ? error.message : error);
      }
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${timeout} ms waiting for ${expression}; last: ${JSON.stringify(last)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  },

  // Calls `expression` (a JavaScript function source) with `arg` in the page; answers its result.
  async evaluate({ page, expression, arg = null }) {
    return entry(page).page.evaluate(call(expression, arg));
  },

  // The textContent of every element matching `target`, in document order.
  async texts({ page, target }) {
    return locate(entry(page).page, target).allTextContents();
  },

  // The attribute `name` of every element matching `target` (null where it is absent).
  async attributes({ page, target, name }) {
    return locate(entry(page).page, target).evaluateAll(
      (elements, attribute) => elements.map((e) => e.getAttribute(attribute)),
      name,
    );
  },

  // Console messages, uncaught errors, CSP violations and dialogs since the page opened.
  async reports({ page }) {
    const { console: messages, errors, violations, dialogs } = entry(page);
    return { console: messages, errors, violations, dialogs };
  },

  async screenshot({ page, path, fullPage = false }) {
    mkdirSync(dirname(path), { recursive: true });
    await entry(page).page.screenshot({ path, fullPage, animations: 'disabled', caret: 'hide' });
  },

  // Changes the page's viewport, as turning a phone or resizing a window does.
  async viewport({ page, viewport }) {
    await entry(page).page.setViewportSize({ width: viewport[0], height: viewport[1] });
  },

  // Switches the page's prefers-color-scheme to "light" or "dark".
  async colorScheme({ page, colorScheme }) {
    await entry(page).page.emulateMedia({ colorScheme });
  },

  // Moves the page's clock (opened with `clock`) `ms` milliseconds ahead, firing its timers.
  async fastForward({ page, ms }) {
    await entry(page).context.clock.fastForward(ms);
  },

  async offline({ page, offline }) {
    await entry(page).context.setOffline(Boolean(offline));
  },

  async close({ page }) {
    await entry(page).context.close();
    pages.delete(page);
  },

  // Chooses `files` in the file input `target`, as a person picking them in the file dialog
  // does: [{path, name, mimeType}], each read from `path` and named `name` (default: the path's
  // last part).
  async setFiles({ page, target, files }) {
    await locate(entry(page).page, target).setInputFiles(files.map(payload));
  },

  // Drops `files` (as for setFiles) on `target`: dragenter, dragover and drop events carrying a
  // DataTransfer that holds them, as a drag from the file manager does.
  async dropFiles({ page, target, files }) {
    const p = entry(page).page;
    const list = files.map(payload).map((file) => ({ ...file, buffer: file.buffer.toString('base64') }));
    const dataTransfer = await p.evaluateHandle((dropped) => {
      const transfer = new DataTransfer();
      for (const file of dropped) {
        const bytes = Uint8Array.from(atob(file.buffer), (c) => c.charCodeAt(0));
        transfer.items.add(new File([bytes], file.name, { type: file.mimeType }));
      }
      return transfer;
    }, list);
    const locator = locate(p, target);
    for (const type of ['dragenter', 'dragover', 'drop']) await locator.dispatchEvent(type, { dataTransfer });
    await dataTransfer.dispose();
  },

  // From now on, records every request of the page's browser context (its workers' and service
  // workers' too): method, URL, resource type and the size of its body.
  async recordRequests({ page }) {
    const record = entry(page);
    record.requests = [];
    record.context.on('request', (request) => {
      record.requests.push({
        method: request.method(),
        url: request.url(),
        resourceType: request.resourceType(),
        bodyBytes: request.postDataBuffer()?.length ?? 0,
      });
    });
  },

  // The requests recorded since recordRequests.
  async requests({ page }) {
    return entry(page).requests ?? [];
  },

  // Clicks `target` and saves the download it starts to `path`; answers the name the page
  // suggested.
  async download({ page, target, path, timeout = DEFAULT_TIMEOUT }) {
    const p = entry(page).page;
    const [download] = await Promise.all([
      p.waitForEvent('download', { timeout }),
      locate(p, target).click(),
    ]);
    mkdirSync(dirname(path), { recursive: true });
    await download.saveAs(path);
    return download.suggestedFilename();
  },
};

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    const command = JSON.parse(line);
    const run = commands[command.cmd];
    if (!run) throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
    const value = await run(command);
    answer = { ok: true, value: value === undefined ? null : value };
  } catch (error) {
    answer = { ok: false, error: String(error && error.message ? error.message : error) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
await browser.close();
