// The message log, virtualised: only the rows in view (plus a margin) are in the DOM, between
// two spacers made of the list's padding. Row heights are measured once shown and cached per
// row key (estimated until then), so a room of tens of thousands of messages scrolls smoothly.
// The view stays at the bottom while the user is at the bottom, and otherwise keeps the row at
// the top of the view where it is when rows are added above it (older history) or measured.

/** Pixels rendered beyond each edge of the view, at least; two views' heights on a tall screen. */
const MARGIN = 1000;
/** Within this many pixels of the bottom counts as at the bottom. */
const BOTTOM_SLACK = 24;
/** Height assumed for a row never measured. */
const ESTIMATE = 28;

export class VirtualLog {
  /**
   * `scroller` scrolls, `list` (inside it) holds the rows; `renderRow(row)` makes a row's element;
   * `onTop()` is called when the view nears the top (to load older history).
   */
  constructor(scroller, list, renderRow, onTop) {
    Object.assign(this, { scroller, list, renderRow, onTop });
    this.room = null;
    /** Elements in the DOM by row key, and the key of each. */
    this.shown = new Map();
    this.keyOf = new WeakMap();
    this.atBottom = true;
    /** The row at the top of the view: `{key, delta}`, delta the pixels scrolled past its top. */
    this.anchor = null;
    /** Whether the next update places the view from the anchor set (not from the DOM). */
    this.placed = true;
    this.frame = 0;
    this.width = 0;
    this.adjusting = false;
    scroller.addEventListener("scroll", () => this.scrolled(), { passive: true });
    new ResizeObserver(() => this.resized()).observe(scroller);
  }

  /** Shows a room (its rows and the scroll position it had). */
  show(room) {
    if (this.room) {
      this.capture();
      this.room.anchor = this.atBottom ? null : this.anchor;
    }
    this.room = room;
    this.list.replaceChildren();
    this.shown.clear();
    this.anchor = room.anchor;
    this.atBottom = room.anchor === null;
    this.placed = true;
    this.update();
  }

  /** The room's rows changed: re-render on the next frame. */
  changed() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.update());
  }

  /** Scrolls to the newest row. */
  toBottom() {
    this.atBottom = true;
    this.anchor = null;
    this.placed = true;
    this.update();
  }

  /** Scrolls by about one view, up (-1) or down (+1). */
  page(direction) {
    this.scroller.scrollBy({ top: direction * this.scroller.clientHeight * 0.9 });
  }

  height(row) {
    return this.room.heights.get(row.key) ?? ESTIMATE;
  }

  /** Offset of the row with `key` from the top of the rows, or null when it is not held. */
  offsetOf(key) {
    let y = 0;
    for (const row of this.room.rows) {
      if (row.key === key) return y;
      y += this.height(row);
    }
    return null;
  }

  scrolled() {
    if (!this.room || this.adjusting) return;
    this.changed();
    if (this.scroller.scrollTop < MARGIN / 2) this.onTop();
  }

  resized() {
    const width = this.scroller.clientWidth;
    if (this.room && width !== this.width) {
      // Rows rewrapped: every height changes, and the DOM no longer shows where the user was;
      // the anchor from the last update still does.
      this.room.heights.clear();
      this.placed = true;
    }
    this.width = width;
    this.changed();
  }

  /**
   * Reads where the view is from the DOM as last rendered (so that neither a scroll nor rows
   * added since can mislead it): at the bottom, or which row is at the top of the view.
   */
  capture() {
    if (this.placed || !this.list.firstElementChild) return;
    const { scrollTop, scrollHeight, clientHeight } = this.scroller;
    this.atBottom = scrollHeight - scrollTop - clientHeight <= BOTTOM_SLACK;
    this.anchor = null;
    if (this.atBottom) return;
    for (let element = this.list.firstElementChild; element; element = element.nextElementSibling) {
      if (element.offsetTop + element.offsetHeight > scrollTop) {
        this.anchor = { key: this.keyOf.get(element), delta: scrollTop - element.offsetTop };
        return;
      }
    }
  }

  /** The list's own top offset inside the scroller (which is positioned), above the spacer. */
  padding() {
    return this.list.offsetTop;
  }

  update() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (!this.room || this.scroller.clientHeight === 0) return;
    this.adjusting = true;
    try {
      this.capture();
      this.placed = false;
      this.place();
      for (let pass = 0; pass < 4; pass++) {
        const stable = this.render();
        const moved = this.place();
        if (stable && !moved) break;
      }
    } finally {
      this.adjusting = false;
    }
  }

  /**
   * Sets the scroll position from the anchor; returns whether it moved or could not get there
   * yet (the spacers of what was shown before may be too short).
   */
  place() {
    const before = this.scroller.scrollTop;
    let target = before;
    if (this.atBottom) {
      target = this.scroller.scrollHeight - this.scroller.clientHeight;
    } else if (this.anchor) {
      // The row's element where it is shown (what capture() measured), else the model's sum.
      const element = this.shown.get(this.anchor.key);
      const offset = element ? element.offsetTop : this.offsetOf(this.anchor.key);
      if (offset !== null) target = offset + this.anchor.delta + (element ? 0 : this.padding());
    }
    this.scroller.scrollTop = target;
    const now = this.scroller.scrollTop;
    return Math.abs(now - before) >= 1 || Math.abs(now - target) >= 1;
  }

  /** Puts the rows in view into the DOM and measures them; returns whether no height changed. */
  render() {
    const rows = this.room.rows;
    const margin = Math.max(MARGIN, 2 * this.scroller.clientHeight);
    const top = this.scroller.scrollTop - this.padding() - margin;
    const bottom = this.scroller.scrollTop + this.scroller.clientHeight + margin;
    let y = 0;
    let first = rows.length;
    let last = rows.length - 1;
    let before = 0;
    for (let i = 0; i < rows.length; i++) {
      const h = this.height(rows[i]);
      if (first === rows.length && y + h >= top) {
        first = i;
        before = y;
      }
      if (y > bottom) {
        last = i - 1;
        break;
      }
      y += h;
    }
    if (first === rows.length) before = y;
    let after = 0;
    for (let i = last + 1; i < rows.length; i++) after += this.height(rows[i]);
    const visible = rows.slice(first, last + 1);
    const wanted = new Set(visible.map((r) => r.key));
    for (const [key, element] of this.shown) {
      if (!wanted.has(key)) {
        element.remove();
        this.shown.delete(key);
      }
    }
    let cursor = this.list.firstElementChild;
    for (const row of visible) {
      const existing = this.shown.get(row.key);
      if (existing && existing === cursor) {
        cursor = cursor.nextElementSibling;
        continue;
      }
      const element = existing ?? this.renderRow(row);
      this.shown.set(row.key, element);
      this.keyOf.set(element, row.key);
      this.list.insertBefore(element, cursor);
    }
    let stable = true;
    for (const row of visible) {
      const h = this.shown.get(row.key).offsetHeight;
      if (h !== this.height(row)) stable = false;
      this.room.heights.set(row.key, h);
    }
    this.list.style.paddingTop = `${before}px`;
    this.list.style.paddingBottom = `${after}px`;
    return stable;
  }
}
