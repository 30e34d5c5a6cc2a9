// The size of the user's terminal, which protocol 1 never sends (spec §12 item 6), inferred
// from its output: the furthest cursor position a program asked for (`CSI row;col H` or `f`),
// a window size report (`CSI 8;rows;cols t`), and the widest line written; never less than
// 80x24 (what the user's terminal most likely was, and asciicast's default), never more than
// MAX_COLS x MAX_ROWS (a hostile output cannot make the page draw a huge terminal).

/** The smallest size drawn. */
export const MIN_COLS = 80;
export const MIN_ROWS = 24;
/** The largest size drawn, whatever the output claims. */
export const MAX_COLS = 400;
export const MAX_ROWS = 150;

const ESC = 0x1b;

/** Reads terminal output chunk by chunk (sequences may be split) and keeps the size it implies. */
export class TerminalSize {
  constructor() {
    this.cols = MIN_COLS;
    this.rows = MIN_ROWS;
    /** Printable characters since the last line start. */
    this.column = 0;
    /** null in text; 'esc' after ESC; a string of parameters inside a CSI. */
    this.sequence = null;
  }

  /** Reads `bytes` (a Uint8Array); true when the size grew. */
  push(bytes) {
    const before = this.cols * 1000 + this.rows;
    for (const byte of bytes) this.byte(byte);
    return this.cols * 1000 + this.rows !== before;
  }

  byte(byte) {
    if (this.sequence === 'esc') {
      this.sequence = byte === 0x5b ? '' : null;
      return;
    }
    if (this.sequence !== null) {
      if (byte >= 0x40 && byte <= 0x7e) {
        this.csi(this.sequence, String.fromCharCode(byte));
        this.sequence = null;
      } else if (this.sequence.length < 32) {
        this.sequence += String.fromCharCode(byte);
      }
      return;
    }
    if (byte === ESC) this.sequence = 'esc';
    else if (byte === 0x0a || byte === 0x0d) this.column = 0;
    else if (byte === 0x08) this.column = Math.max(0, this.column - 1);
    // A UTF-8 continuation byte is part of the character before it.
    else if (byte >= 0x20 && byte !== 0x7f && (byte & 0xc0) !== 0x80) {
      this.column += 1;
      this.grow(this.column, 0);
    }
  }

  csi(parameters, final) {
    const numbers = parameters.split(';').map((p) => Number.parseInt(p, 10));
    if (final === 'H' || final === 'f') {
      this.grow(numbers[1] || 0, numbers[0] || 0);
      this.column = Math.max(0, (numbers[1] || 1) - 1);
    } else if (final === 't' && numbers[0] === 8) {
      this.grow(numbers[2] || 0, numbers[1] || 0);
    }
  }

  grow(cols, rows) {
    if (Number.isFinite(cols)) this.cols = Math.min(MAX_COLS, Math.max(this.cols, cols));
    if (Number.isFinite(rows)) this.rows = Math.min(MAX_ROWS, Math.max(this.rows, rows));
  }
}
