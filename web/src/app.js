// kanava's browser chat: the login with the browser's key, then rooms, the log, people, the
// composer and the connection status, over the web protocol (docs/web-protocol.md). Everything
// other users send is put into the page as text (textContent, text nodes), never as markup.

import { HELP, parse, roomName } from "./commands.js";
import { Connection } from "./connection.js";
import { forgetSettings, loadIdentity, loadSettings, saveSettings } from "./identity.js";
import { Room, localRow } from "./rooms.js";
import { clock, mentionTest, sanitize, segments, shownName, shownRoom, shownText } from "./text.js";
import { VirtualLog } from "./virtual-log.js";

/** The room the login form offers when the address names none. */
const DEFAULT_ROOM = "lobby";
/** How often an idle connection is checked, and how long its answer may take, in ms. */
const PROBE_EVERY = 30_000;
const PROBE_WAIT = 10_000;
/** Private message ids remembered so that one sent again after a reconnect is shown once. */
const MAX_PM_IDS = 10_000;
/** Room in a request frame beside the text (the server allows max_text plus 1 KiB of JSON). */
const FRAME_SLACK = 768;
/** Limits assumed until the server's hello says otherwise. */
const DEFAULT_LIMITS = { max_text: 65536, history_page: 200, max_rooms: 50 };

const $ = (id) => document.getElementById(id);
const ui = {
  loginView: $("login-view"),
  login: $("login"),
  loginName: $("login-name"),
  loginRoom: $("login-room"),
  loginSubmit: $("login-submit"),
  loginError: $("login-error"),
  loginStatus: $("login-status"),
  chatView: $("chat-view"),
  rooms: $("rooms"),
  topic: $("topic"),
  scroller: $("scroller"),
  messages: $("messages"),
  people: $("people"),
  peopleCount: $("people-count"),
  composer: $("composer"),
  message: $("message"),
  status: $("status"),
  notify: $("notify"),
  identityKey: $("identity-key"),
  identityFingerprint: $("identity-fingerprint"),
  copyKey: $("copy-key"),
  forget: $("forget"),
};

const state = {
  identity: null,
  settings: loadSettings(),
  connection: null,
  /** The name logged in as (as the server spells it). */
  name: null,
  mentions: () => false,
  limits: DEFAULT_LIMITS,
  /** Open rooms in tab order. */
  rooms: new Map(),
  current: null,
  /** Rooms asked for at login, the first opened becoming current. */
  wanted: [],
  switchTo: null,
  welcomed: false,
  /** Rows that came before any room was open (private messages kept while away). */
  waitingRows: [],
  pmSeen: new Set(),
  tabs: new Map(),
  countdown: 0,
  probe: 0,
  readSave: 0,
  /** What the first login did to the name, said once in the status. */
  outcome: undefined,
};

const log = new VirtualLog(ui.scroller, ui.messages, renderRow, loadOlder);

// ---- Rendering -------------------------------------------------------------------------------

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

/** The sender's name: `~uid` and class `unverified` when the sender did not prove it. */
function fromSpan(name, verified) {
  return span(verified ? "from" : "from unverified", shownName(name ?? "", verified));
}

/** Shown text with its http(s) links as links (no previews, no referrer, a new tab). */
function textSpan(text) {
  const element = span("text", "");
  for (const part of segments(shownText(text))) {
    if (part.href) {
      const link = document.createElement("a");
      link.href = part.href;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      link.textContent = part.text;
      element.append(link);
    } else {
      element.append(part.text);
    }
  }
  return element;
}

function isMe(name) {
  return String(name).toLowerCase() === state.name?.toLowerCase();
}

/** Whether a row is someone else's message naming you. */
function mentionsMe(row) {
  return (row.kind === "message" || row.kind === "emote") && !isMe(row.from) && state.mentions(row.text);
}

/** One row of the log. */
function renderRow(row) {
  const li = document.createElement("li");
  li.className = row.kind;
  if (mentionsMe(row)) li.classList.add("mention");
  if (row.seq !== undefined) li.dataset.seq = String(row.seq);
  if (Number.isFinite(row.time)) li.dataset.time = clock(row.time);
  switch (row.kind) {
    case "message":
    case "emote":
      li.append(fromSpan(row.from, row.verified), " ", textSpan(row.text));
      break;
    case "binary":
      li.append(fromSpan(row.from, row.verified), " ", span("text", `[binary, ${row.size} bytes]`));
      break;
    case "join":
      li.append(fromSpan(row.from, row.verified), " ", span("text", "joined"));
      break;
    case "leave":
      li.append(fromSpan(row.from, row.verified), " ", span("text", "left"));
      break;
    case "pm":
      li.append(
        fromSpan(row.from, true),
        " → ",
        span("to", shownName(row.to ?? "")),
        ": ",
        textSpan(row.text),
      );
      break;
    default:
      li.append(textSpan(row.text ?? ""));
      break;
  }
  return li;
}

function renderTabs() {
  const seen = new Set();
  let index = 0;
  for (const room of state.rooms.values()) {
    seen.add(room.name);
    let button = state.tabs.get(room.name);
    if (!button) {
      button = document.createElement("button");
      button.type = "button";
      button.dataset.room = room.name;
      button.addEventListener("click", () => switchRoom(room.name));
      state.tabs.set(room.name, button);
    }
    const label = shownRoom(room.name);
    button.replaceChildren(label);
    button.title = index < 9 ? `${label} (Alt+${index + 1})` : label;
    if (room.unread > 0) button.append(span("unread", String(room.unread)));
    if (room.name === state.current) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
    if (ui.rooms.children[index] !== button) ui.rooms.insertBefore(button, ui.rooms.children[index] ?? null);
    index += 1;
  }
  for (const [name, button] of state.tabs) {
    if (!seen.has(name)) {
      button.remove();
      state.tabs.delete(name);
    }
  }
  renderTitle();
}

function renderTitle() {
  let unread = 0;
  for (const room of state.rooms.values()) unread += room.unread;
  const room = state.current ? ` ${shownRoom(state.current)}` : "";
  document.title = `${unread > 0 ? `(${unread}) ` : ""}kanava${room}`;
}

function renderTopic() {
  const topic = currentRoom()?.topic;
  ui.topic.textContent = topic?.text ? sanitize(topic.text) : "";
  ui.topic.title = topic?.by ? `set by ${shownName(topic.by)}` : "";
}

function renderPeople() {
  const members = currentRoom()?.members ?? [];
  ui.people.replaceChildren(
    ...members.map((member) => {
      const verified = member.verified !== false;
      const li = document.createElement("li");
      li.textContent = shownName(member.name, verified);
      if (!verified) li.className = "unverified";
      return li;
    }),
  );
  ui.peopleCount.textContent = `(${members.length})`;
}

function setStatus(text, problem = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle("problem", problem);
}

// ---- Rooms -----------------------------------------------------------------------------------

function currentRoom() {
  return state.current === null ? undefined : state.rooms.get(state.current);
}

/** Whether the user is looking at `room` now. */
function watching(room) {
  return room.name === state.current && !document.hidden;
}

function switchRoom(name) {
  const room = state.rooms.get(name);
  if (!room) return;
  state.current = name;
  room.markRead();
  log.show(room);
  renderTabs();
  renderTopic();
  renderPeople();
  history.replaceState(null, "", `#${encodeURIComponent(name)}`);
  remember();
}

function switchBy(step) {
  const names = [...state.rooms.keys()];
  if (names.length === 0) return;
  const at = names.indexOf(state.current);
  switchRoom(names[(at + step + names.length) % names.length]);
}

/** Adds a row of the page's own to a room (the current one by default). */
function addRow(row, roomName = state.current) {
  const room = roomName === null ? undefined : state.rooms.get(roomName);
  if (!room) {
    state.waitingRows.push(row);
    return;
  }
  room.addLocal(row);
  if (room.name === state.current) log.changed();
}

function notice(text, roomName) {
  addRow(localRow("notice", { text }), roomName);
}

/** Keeps the name, the open rooms and what was read, for the next visit. */
function remember() {
  const read = {};
  for (const room of state.rooms.values()) {
    const mark = room.readMark ?? state.settings.read[room.name];
    if (Number.isSafeInteger(mark)) read[room.name] = mark;
  }
  state.settings = {
    name: state.name,
    rooms: [...state.rooms.keys()],
    current: state.current,
    read,
  };
  saveSettings(state.settings);
}

/** Keeps read marks at most once a second while messages stream in. */
function rememberSoon() {
  if (!state.readSave) {
    state.readSave = setTimeout(() => {
      state.readSave = 0;
      remember();
    }, 1000);
  }
}

function openRoom(name) {
  const known = state.rooms.get(name);
  if (known) return known;
  const mark = state.settings.read[name];
  const room = new Room(name, Number.isSafeInteger(mark) ? mark : null);
  state.rooms.set(name, room);
  return room;
}

function requestJoin(name, after) {
  const message = { type: "join", room: name };
  if (after > 0) message.after = after;
  return state.connection.request(message).catch((refusal) => {
    if (refusal.code === "offline") return;
    if (state.rooms.size === 0) {
      showLogin(`#${shownName(name)}: ${refusal.message}`);
    } else {
      setStatus(`could not join ${shownRoom(name)}: ${refusal.message}`, true);
    }
  });
}

// ---- Server messages -------------------------------------------------------------------------

function joined(message) {
  if (typeof message.room !== "string") return;
  const wasOpen = state.rooms.has(message.room);
  const room = openRoom(message.room);
  if (message.resumed === false && room.rows.length > 0) {
    room.reset();
    if (room.name === state.current) log.show(room);
  }
  room.topic = message.topic ?? null;
  const rows = room.setMembers(Array.isArray(message.members) ? message.members : [], wasOpen);
  if (!wasOpen) {
    for (const row of state.waitingRows.splice(0)) room.addLocal(row);
  }
  if (state.current === null || state.switchTo === room.name) {
    state.switchTo = null;
    switchRoom(room.name);
  } else if (room.name === state.current) {
    renderTopic();
    renderPeople();
    if (rows.length > 0) log.changed();
  }
  renderTabs();
  remember();
}

function liveEvent(message) {
  const room = state.rooms.get(message.room);
  if (!room) return;
  const row = room.addEvent(message, watching(room));
  if (!row) return;
  if (row.fresh && mentionsMe(row)) {
    alertUser(`${shownName(row.from, row.verified)} in ${shownRoom(room.name)}`, row.text);
  }
  if (room.name === state.current) {
    log.changed();
    if (document.hidden) renderTabs();
    else rememberSoon();
  } else {
    renderTabs();
  }
}

function presence(message) {
  const room = state.rooms.get(message.room);
  if (!room || !Array.isArray(message.members)) return;
  const rows = room.setMembers(message.members, true);
  if (room.name === state.current) {
    renderPeople();
    if (rows.length > 0) log.changed();
  }
}

function topic(message) {
  const room = state.rooms.get(message.room);
  if (!room) return;
  room.topic = { text: message.text ?? "", by: message.by, time: message.time };
  const text = message.text ? `set the topic: ${message.text}` : "cleared the topic";
  const by = shownName(message.by ?? "someone");
  room.addLocal(localRow("notice", { text: `${by} ${text}`, time: message.time }));
  if (room.name === state.current) {
    renderTopic();
    log.changed();
  }
}

function privateMessage(message) {
  if (message.id !== undefined) {
    const key = String(message.id);
    if (state.pmSeen.has(key)) return;
    if (state.pmSeen.size >= MAX_PM_IDS) state.pmSeen.clear();
    state.pmSeen.add(key);
  }
  const { from, to, time } = message;
  addRow(localRow("pm", { from, to, text: message.text ?? "", time }));
  if (!isMe(message.from)) alertUser(`${shownName(message.from)} (private)`, message.text ?? "");
}

function olderEvents(message) {
  const room = state.rooms.get(message.room);
  if (!room || !Array.isArray(message.events)) return;
  room.addOlder(message.events, message.more);
  if (room.name === state.current) log.changed();
}

function received(message) {
  switch (message.type) {
    case "joined":
      return joined(message);
    case "event":
      return liveEvent(message);
    case "presence":
      return presence(message);
    case "topic":
      return topic(message);
    case "pm":
      return privateMessage(message);
    case "notice":
      return notice(message.text ?? "", state.rooms.has(message.room) ? message.room : state.current);
    case "history":
      return olderEvents(message);
    case "error":
      if (message.id === undefined) setStatus(message.reason ?? message.code ?? "error", true);
      return undefined;
    default:
      return undefined;
  }
}

// ---- Notifications ---------------------------------------------------------------------------

/** A browser notification for a mention or a private message, when the page is not seen. */
function alertUser(title, text) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  const body = sanitize(text).slice(0, 200);
  const shown = new Notification(title, { body, tag: "kanava" });
  shown.onclick = () => {
    window.focus();
    shown.close();
  };
}

function offerNotifications() {
  ui.notify.hidden = !("Notification" in window) || Notification.permission !== "default";
}

// ---- Connection ------------------------------------------------------------------------------

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/kanava`;
}

function stopCountdown() {
  clearInterval(state.countdown);
  state.countdown = 0;
}

function connectionState(what, delay, closed) {
  stopCountdown();
  switch (what) {
    case "connecting":
      if (state.welcomed) setStatus("connecting…");
      else ui.loginStatus.textContent = "connecting…";
      break;
    case "connected":
      setStatus(`connected as ${shownName(state.name)}${state.outcome ? `; ${state.outcome}` : ""}`);
      state.outcome = undefined;
      ui.loginStatus.textContent = "";
      break;
    case "waiting": {
      const until = Date.now() + delay;
      const why = closed?.reason ? ` (${sanitize(closed.reason)})` : "";
      const tick = () => {
        const seconds = Math.max(1, Math.ceil((until - Date.now()) / 1000));
        const text = `reconnecting in ${seconds}s…${why}`;
        if (state.welcomed) setStatus(text, true);
        else ui.loginStatus.textContent = `cannot reach the server; ${text}`;
      };
      tick();
      state.countdown = setInterval(tick, 250);
      break;
    }
    default:
      break;
  }
}

function welcomed(welcome, hello) {
  const first = !state.welcomed;
  state.welcomed = true;
  state.name = typeof welcome.name === "string" ? welcome.name : state.connection.name;
  state.connection.name = state.name;
  state.mentions = mentionTest(state.name);
  state.limits = { ...DEFAULT_LIMITS, ...(hello?.limits ?? {}) };
  if (first) {
    ui.loginView.hidden = true;
    ui.chatView.hidden = false;
    ui.forget.hidden = false;
    ui.loginError.textContent = "";
    offerNotifications();
    ui.message.focus();
    state.outcome = {
      bound: "the name is now bound to this browser's key",
      confirmed: "this browser's key is now one of the name's keys",
    }[welcome.outcome];
  }
  remember();
  if (state.rooms.size > 0) {
    for (const room of state.rooms.values()) requestJoin(room.name, room.high);
  } else {
    for (const name of state.wanted) requestJoin(name, 0);
  }
  startProbe();
}

function refused(message) {
  const reason = message.reason ?? message.code ?? "refused";
  showLogin(reason);
}

/** Back to the login form with why. */
function showLogin(reason) {
  state.connection?.stop();
  clearInterval(state.probe);
  stopCountdown();
  ui.loginStatus.textContent = "";
  ui.loginError.textContent = sanitize(reason);
  ui.loginSubmit.disabled = false;
  ui.chatView.hidden = true;
  ui.loginView.hidden = false;
  if (state.name) ui.loginName.value = state.name;
  state.welcomed = false;
  state.rooms.clear();
  state.current = null;
  renderTabs();
  ui.loginName.focus();
}

/** Logs in as `name` and opens `rooms`, `current` first shown. */
function start(name, rooms, current) {
  state.connection?.stop();
  state.wanted = rooms;
  state.switchTo = current;
  state.connection = new Connection({
    url: socketUrl(),
    name,
    identity: state.identity,
    onState: connectionState,
    onWelcome: welcomed,
    onRefused: refused,
    onMessage: received,
  });
  state.connection.connect();
}

/** Asks for something small now and then; a connection that does not answer is replaced. */
function startProbe() {
  clearInterval(state.probe);
  state.probe = setInterval(() => {
    const connection = state.connection;
    if (!connection?.ready) return;
    const timer = setTimeout(() => connection.abandon(), PROBE_WAIT);
    connection
      .request({ type: "keys" })
      .catch(() => {})
      .finally(() => clearTimeout(timer));
  }, PROBE_EVERY);
}

function loadOlder() {
  const room = currentRoom();
  if (!room || !room.more || room.loading || !state.connection?.ready) return;
  const before = room.oldest();
  if (before === null) return;
  room.loading = true;
  state.connection
    .request({ type: "history", room: room.name, before, limit: state.limits.history_page })
    .catch((refusal) => setStatus(`older messages: ${refusal.message}`, true))
    .finally(() => {
      room.loading = false;
    });
}

// ---- The composer ----------------------------------------------------------------------------

const encoder = new TextEncoder();

/** Sends a request from the composer; a refusal is shown with the server's reason. */
function perform(request, describe, keep) {
  if (!state.connection?.ready) {
    setStatus("not connected: nothing was sent (your text is kept)", true);
    return false;
  }
  state.connection
    .request(request)
    .then((reply) => {
      if (ui.status.classList.contains("problem") && state.connection?.ready) {
        setStatus(`connected as ${shownName(state.name)}`);
      }
      describe?.(reply);
    })
    .catch((refusal) => {
      setStatus(refusal.message, true);
      if (!keep) return;
      // Give the text back; when something else is being typed, show it so it is not lost.
      if (ui.message.value === "") ui.message.value = keep;
      else notice(`not sent (${refusal.message}): ${keep}`);
    });
  return true;
}

/**
 * Whether text is over the server's limit (refused here, so nothing is lost): its UTF-8 bytes,
 * and its JSON encoding, which escapes controls, beside the frame's other fields.
 */
function tooLarge(text) {
  const max = state.limits.max_text;
  const bytes = encoder.encode(text).length;
  if (bytes > max) {
    setStatus(`message too large: at most ${max} bytes (this one has ${bytes}); nothing was sent`, true);
    return true;
  }
  if (encoder.encode(JSON.stringify(text)).length > max + FRAME_SLACK) {
    setStatus(
      `message too large once encoded (a control character takes 6 bytes): at most ${max} bytes; nothing was sent`,
      true,
    );
    return true;
  }
  return false;
}

function lines(title, entries) {
  return [title, ...entries].join("\n");
}

/** Runs what the composer holds; returns whether it was taken (and can be cleared). */
function submit(line) {
  const parsed = parse(line);
  const room = currentRoom();
  if (parsed.error) {
    setStatus(parsed.error, true);
    return false;
  }
  if (parsed.say !== undefined || parsed.command === "me") {
    const text = parsed.say ?? `/me ${parsed.action}`;
    if (!room || tooLarge(text)) return false;
    log.toBottom();
    return perform({ type: "send", room: room.name, text }, null, line);
  }
  switch (parsed.command) {
    case "help":
      notice(lines("commands:", HELP.map(([usage, what]) => `  ${usage} — ${what}`)));
      return true;
    case "who": {
      const names = (room?.members ?? []).map((m) => shownName(m.name, m.verified !== false));
      notice(`in ${shownRoom(room?.name ?? "")}: ${names.join(", ") || "nobody"}`);
      return true;
    }
    case "join":
      if (state.rooms.has(parsed.room)) {
        switchRoom(parsed.room);
        return true;
      }
      if (!state.connection?.ready) {
        setStatus("not connected: try again in a moment", true);
        return false;
      }
      state.switchTo = parsed.room;
      requestJoin(parsed.room, 0);
      return true;
    case "part": {
      if (!room) return false;
      if (state.rooms.size === 1) {
        setStatus("this is your only room: /join another first", true);
        return false;
      }
      return perform({ type: "leave", room: room.name }, () => closeRoom(room.name));
    }
    case "msg":
      if (tooLarge(parsed.text)) return false;
      return perform({ type: "pm", to: parsed.to, text: parsed.text }, (reply) => {
        if (reply.online === false) notice(`${shownName(parsed.to)} is away and will see it later`);
      }, line);
    case "topic":
      if (parsed.text === undefined) {
        const text = room?.topic?.text;
        notice(text ? `topic: ${text}` : `${shownRoom(room?.name ?? "")} has no topic`);
        return true;
      }
      return perform({ type: "topic", room: room.name, text: parsed.text }, null, line);
    case "keys":
      return perform({ type: "keys" }, (reply) => {
        const keys = Array.isArray(reply.keys) ? reply.keys : [];
        notice(
          lines(
            `keys of ${shownName(state.name)}:`,
            keys.map((k) => {
              const mine = k.fingerprint === state.identity.fingerprint ? " (this browser)" : "";
              return `  ${k.fingerprint}${k.pending ? " (pending)" : ""}${mine}\n    ${k.key}`;
            }),
          ),
        );
      });
    case "key_add":
      return perform({ type: "key_add", key: parsed.key }, (reply) => {
        const outcome = {
          pending: "added; it becomes active when it first logs in",
          still_pending: "already added, waiting for its first login",
          active: "already one of your keys",
        }[reply.outcome];
        notice(`key ${outcome ?? reply.outcome ?? "added"}`);
      }, line);
    case "key_remove":
      return perform({ type: "key_remove", fingerprint: parsed.fingerprint }, () =>
        notice(`key ${parsed.fingerprint} removed`),
      );
    case "rooms":
      return perform({ type: "rooms" }, (reply) => {
        const rooms = Array.isArray(reply.rooms) ? reply.rooms : [];
        notice(
          lines(
            "rooms with people in them:",
            rooms.map((r) => {
              const count = Array.isArray(r.members) ? r.members.length : r.members;
              return `  ${shownRoom(r.room ?? "")} (${count})`;
            }),
          ),
        );
      });
    default:
      return false;
  }
}

function closeRoom(name) {
  const names = [...state.rooms.keys()];
  const at = names.indexOf(name);
  state.rooms.delete(name);
  if (state.current === name) {
    state.current = null;
    const next = names[at + 1] ?? names[at - 1];
    if (next !== undefined && next !== name) switchRoom(next);
  }
  renderTabs();
  remember();
}

// ---- Wiring ----------------------------------------------------------------------------------

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  const line = ui.message.value;
  if (line.trim() === "") return;
  if (submit(line)) ui.message.value = "";
});

ui.message.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    ui.composer.requestSubmit();
  } else if (e.key === "PageUp" || e.key === "PageDown") {
    e.preventDefault();
    log.page(e.key === "PageUp" ? -1 : 1);
  }
});

document.addEventListener("keydown", (e) => {
  if (ui.chatView.hidden || !e.altKey || e.ctrlKey || e.metaKey) return;
  const digit = /^Digit([1-9])$/.exec(e.code);
  if (digit) {
    const name = [...state.rooms.keys()][Number(digit[1]) - 1];
    if (name !== undefined) switchRoom(name);
    e.preventDefault();
  } else if (e.key === "ArrowUp" || e.key === "ArrowDown") {
    switchBy(e.key === "ArrowUp" ? -1 : 1);
    e.preventDefault();
  }
});

ui.login.addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = ui.loginName.value.trim();
  const room = roomName(ui.loginRoom.value.trim()) || DEFAULT_ROOM;
  ui.loginError.textContent = "";
  if (!(await identityReady)) return;
  ui.loginSubmit.disabled = true;
  setTimeout(() => {
    ui.loginSubmit.disabled = false;
  }, 1500);
  start(name, [room], room);
});

ui.notify.addEventListener("click", async () => {
  await Notification.requestPermission();
  offerNotifications();
});

ui.copyKey.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(state.identity?.openSsh ?? "");
    ui.copyKey.textContent = "Copied";
    setTimeout(() => {
      ui.copyKey.textContent = "Copy key";
    }, 2000);
  } catch {
    getSelection()?.selectAllChildren(ui.identityKey);
  }
});

ui.forget.addEventListener("click", () => {
  state.connection?.stop();
  forgetSettings();
  location.hash = "";
  location.reload();
});

document.addEventListener("visibilitychange", () => {
  const room = currentRoom();
  if (!document.hidden && room) {
    room.markRead();
    renderTabs();
    remember();
  }
});

window.addEventListener("online", () => state.connection?.connect());

// A room typed into the address (`…/#ops`) while chatting opens it, as `/join ops` would.
window.addEventListener("hashchange", () => {
  const room = roomFromAddress();
  if (ui.chatView.hidden || !room || room === state.current) return;
  submit(`/join ${room}`);
});

/** The room named in the address (`/#dev`), if any. */
function roomFromAddress() {
  try {
    return roomName(decodeURIComponent(location.hash.slice(1)));
  } catch {
    return "";
  }
}

/** The browser's key, loaded or made; false (with the reason shown) when the browser cannot. */
async function prepareIdentity() {
  try {
    state.identity = await loadIdentity();
  } catch (error) {
    const why = "this browser cannot make or keep an Ed25519 key (WebCrypto and IndexedDB are needed)";
    ui.loginError.textContent = `${why}: ${error.message}`;
    ui.loginSubmit.disabled = true;
    return false;
  }
  ui.identityKey.textContent = state.identity.openSsh;
  ui.identityFingerprint.textContent = state.identity.fingerprint;
  return true;
}

const identityReady = prepareIdentity();

async function boot() {
  const fromAddress = roomFromAddress();
  ui.loginRoom.value = fromAddress || state.settings.current || DEFAULT_ROOM;
  if (state.settings.name) ui.loginName.value = state.settings.name;
  if (!(await identityReady)) return;
  if (state.settings.name) {
    const rooms = [...state.settings.rooms];
    if (fromAddress && !rooms.includes(fromAddress)) rooms.push(fromAddress);
    if (rooms.length === 0) rooms.push(DEFAULT_ROOM);
    start(state.settings.name, rooms, fromAddress || state.settings.current || rooms[0]);
  }
}

boot();
