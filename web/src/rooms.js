// What the page holds of one open room: its rows (events from the store, in seq order, and the
// page's own lines: joins and leaves seen in presence, notices, private messages, command
// output), who is present, the topic and what is unread. Plain data and no DOM, so that the
// rules (never a seq twice, a cap on what is held, unread counts) are unit-tested.

import { shownName } from "./text.js";

/** The most rows held per room; the oldest go first and come back by paging. */
export const MAX_HELD = 20_000;

/** How long a join seen in presence and a stored join of the same name count as one. */
const SAME_JOIN_MS = 10_000;

/** Event kinds that count as unread and can mention you. */
const SPOKEN = new Set(["text", "emote", "binary"]);

let localKeys = 0;

/** A row of the page's own (no seq): `kind` is join, leave, notice or pm. */
export function localRow(kind, fields) {
  localKeys += 1;
  return { key: `l${localKeys}`, kind, ...fields, time: fields.time ?? Date.now() };
}

/** The row of a stored event: `message` for text, else the event's kind. */
export function eventRow(event) {
  const kind = event.kind === "text" ? "message" : event.kind;
  return {
    key: `s${event.seq}`,
    seq: event.seq,
    kind,
    time: event.time,
    from: event.from,
    verified: event.verified !== false,
    text: event.text ?? "",
    size: event.size ?? 0,
  };
}

/** One open room. */
export class Room {
  constructor(name, readMark = null) {
    this.name = name;
    /** Rows, oldest first. */
    this.rows = [];
    /** The seqs held, so that none is shown twice. */
    this.seqs = new Set();
    /** The highest seq shown: a reconnect resumes after it. */
    this.high = 0;
    /** Whether the store may hold older events than the oldest held. */
    this.more = true;
    /** The highest seq the user has seen; null until the room has been looked at. */
    this.readMark = readMark;
    this.unread = 0;
    this.members = [];
    this.topic = null;
    /** Measured row heights by row key, kept by the log between visits. */
    this.heights = new Map();
    /** Where the log was scrolled when the room was left: null for the bottom. */
    this.anchor = null;
    this.recentJoins = new Map();
  }

  /** The oldest seq held, or null. */
  oldest() {
    const row = this.rows.find((r) => r.seq !== undefined);
    return row ? row.seq : null;
  }

  /** Drops every row (the server could not resume: what comes next replaces them). */
  reset() {
    this.rows = [];
    this.seqs.clear();
    this.high = 0;
    this.more = true;
    this.heights.clear();
    this.recentJoins.clear();
  }

  /**
   * Adds a live (or resumed) event at the end. Returns the row, or null for a seq already held
   * or older than what is shown. `current` says whether the user is looking at the room now.
   */
  addEvent(event, current) {
    if (!Number.isSafeInteger(event.seq) || this.seqs.has(event.seq) || event.seq <= this.high) {
      return null;
    }
    const row = eventRow(event);
    this.seqs.add(row.seq);
    this.high = row.seq;
    if (row.kind === "join") this.sameJoin(row);
    this.rows.push(row);
    row.fresh = this.readMark !== null && row.seq > this.readMark;
    if (current) this.readMark = this.high;
    else if (row.fresh && SPOKEN.has(event.kind)) this.unread += 1;
    this.trim();
    return row;
  }

  /** Adds older events (a history page, oldest first) before what is held; returns how many. */
  addOlder(events, more) {
    const oldest = this.oldest();
    const rows = events
      .filter((e) => Number.isSafeInteger(e.seq) && !this.seqs.has(e.seq))
      .filter((e) => oldest === null || e.seq < oldest)
      .map(eventRow);
    for (const row of rows) this.seqs.add(row.seq);
    if (oldest === null) this.high = Math.max(this.high, ...rows.map((r) => r.seq));
    this.rows.unshift(...rows);
    this.more = Boolean(more) && rows.length > 0;
    return rows.length;
  }

  /** Adds a row of the page's own at the end. */
  addLocal(row) {
    this.rows.push(row);
    this.trim();
    return row;
  }

  /** Marks everything held as seen. */
  markRead() {
    this.readMark = Math.max(this.readMark ?? 0, this.high);
    this.unread = 0;
  }

  /**
   * Sets who is present. With `diff`, returns the join and leave rows for who came and went;
   * a join that the store also recorded a moment ago is shown once.
   */
  setMembers(members, diff) {
    const before = new Map(this.members.map((m) => [shownName(m.name, m.verified !== false), m]));
    const now = new Map(members.map((m) => [shownName(m.name, m.verified !== false), m]));
    this.members = [...now.values()];
    if (!diff) return [];
    const rows = [];
    const at = Date.now();
    for (const [shown, member] of now) {
      if (before.has(shown)) continue;
      const recent = this.recentJoins.get(shown);
      if (recent && recent.stored && at - recent.at < SAME_JOIN_MS) continue;
      const row = localRow("join", { from: member.name, verified: member.verified !== false });
      this.recentJoins.set(shown, { at, row });
      rows.push(row);
    }
    for (const [shown, member] of before) {
      if (now.has(shown)) continue;
      rows.push(localRow("leave", { from: member.name, verified: member.verified !== false }));
    }
    for (const row of rows) this.addLocal(row);
    return rows;
  }

  /** A stored join of someone whose arrival presence showed a moment ago replaces that row. */
  sameJoin(row) {
    const shown = shownName(row.from, row.verified);
    const recent = this.recentJoins.get(shown);
    const at = Date.now();
    if (recent && recent.row && at - recent.at < SAME_JOIN_MS) {
      const index = this.rows.lastIndexOf(recent.row);
      if (index >= 0) this.rows.splice(index, 1);
    }
    this.recentJoins.set(shown, { at, stored: true });
    if (this.recentJoins.size > 1000) this.recentJoins.clear();
  }

  /** Drops the oldest rows beyond MAX_HELD; paging brings them back. */
  trim() {
    if (this.rows.length <= MAX_HELD) return;
    const dropped = this.rows.splice(0, this.rows.length - MAX_HELD);
    for (const row of dropped) {
      if (row.seq !== undefined) this.seqs.delete(row.seq);
      this.heights.delete(row.key);
    }
    this.more = true;
  }
}
