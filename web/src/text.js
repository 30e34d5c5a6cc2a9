// Text from other users made safe to show and split into what the page renders: plain text and
// http(s) links. Everything here returns strings or plain objects; the page puts them into the
// DOM with textContent only, so markup in a message is always shown as the characters it is.

/** The most of one message shown; the rest is summarised, so one message cannot swamp the log. */
export const MAX_SHOWN = 16 * 1024;

/** Bidirectional embeddings, overrides, isolates and marks: they could reorder what is shown. */
const BIDI = /[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/;

/**
 * Makes text safe to show as it is in a web page, with the SSH chat's rules (crates/core
 * sanitize.rs) except that a line break and a tab stay: C0 controls, ESC and DEL are shown in
 * caret notation (`^[`, `^?`), C1 controls and bidirectional controls as U+FFFD.
 */
export function sanitize(text) {
  let out = "";
  for (const c of String(text)) {
    const code = c.codePointAt(0);
    if (c === "\n" || c === "\t") out += c;
    else if (code < 0x20) out += `^${String.fromCharCode(code + 0x40)}`;
    else if (code === 0x7f) out += "^?";
    else if ((code >= 0x80 && code <= 0x9f) || BIDI.test(c)) out += "\ufffd";
    else out += c;
  }
  return out;
}

/** A name as shown: sanitised, and `~uid` for a sender that did not prove it. */
export function shownName(name, verified = true) {
  const safe = sanitize(name).replace(/[\n\t]/g, " ");
  return verified ? safe : `~${safe}`;
}

/** A room as shown in a tab: `#dev`. */
export function shownRoom(room) {
  return `#${shownName(room)}`;
}

/**
 * What to show of one message: sanitised, and cut at MAX_SHOWN characters with a note of how
 * many more there were.
 */
export function shownText(text) {
  const safe = sanitize(text);
  if (safe.length <= MAX_SHOWN) return safe;
  return `${safe.slice(0, MAX_SHOWN)}… [${safe.length - MAX_SHOWN} more characters]`;
}

const URL_CANDIDATE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?)\]}]+$/;

/**
 * Splits shown text into segments `{text}` and `{text, href}`: only URLs that parse as http: or
 * https: become links; anything else (a `javascript:` URL, a bare word) stays text.
 */
export function segments(text) {
  const out = [];
  let at = 0;
  for (const match of text.matchAll(URL_CANDIDATE)) {
    let candidate = match[0];
    const trailing = candidate.match(TRAILING);
    if (trailing) candidate = candidate.slice(0, -trailing[0].length);
    let url;
    try {
      url = new URL(candidate);
    } catch {
      continue;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") continue;
    if (match.index > at) out.push({ text: text.slice(at, match.index) });
    out.push({ text: candidate, href: url.href });
    at = match.index + candidate.length;
  }
  if (at < text.length) out.push({ text: text.slice(at) });
  return out;
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\-]/g, "\\$&");
}

/**
 * A test for mentions of `name`: the name as a whole word, in any case (names compare
 * case-insensitively), so `alice` matches "hi Alice!" and "@alice" but not "malice".
 */
export function mentionTest(name) {
  if (!name) return () => false;
  const pattern = new RegExp(`(?<![A-Za-z0-9_])${escapeRegExp(name)}(?![A-Za-z0-9_])`, "i");
  return (text) => pattern.test(text);
}

/**
 * When a Unix millisecond time was, in the browser's time zone: hours and minutes, with the date
 * before them when it was not on the day of `now`.
 */
export function clock(ms, now = Date.now()) {
  const date = new Date(ms);
  const today = new Date(now);
  const pad = (n) => String(n).padStart(2, "0");
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  if (date.toDateString() === today.toDateString()) return time;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}
