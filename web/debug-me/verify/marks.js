// What the drawing of a log's chain needs of each line: its kind (Seen, Entered, rejected
// Entered, control, or a line that is not a log message), whose it is, whether it is trusted,
// and the lines it is chained to. The links of an activity the verifier accepted are the
// pointers it was signed with, as the verifier found them (written in the log, or recovered
// from the signatures: the server's log writes none, the wire drops them); past a failure they
// are those the log writes (`prevActivity`, `prevEntered`, resolved through each line's
// `loggedHash`). Kept apart from the drawing so that the worker can send plain data to the page.

/** @typedef {'seen' | 'entered' | 'rejected' | 'control' | 'invalid'} MarkKind */

/**
 * One line of a log as the drawing shows it.
 * @typedef {object} Mark
 * @property {number} line 1-based line number
 * @property {MarkKind} kind
 * @property {'user' | 'developer' | null} side
 * @property {boolean} trusted false for the failing line and every line after it
 * @property {number | null} follows the line of the activity the log says this one follows
 * @property {number | null} followsEntered the line of the Entered it names as last accepted
 * @property {string} what the control's action (`SessionKey`, `ChatMessage`…), or ''
 */

const text = new TextDecoder();

/** A model Hash (`{ method, value }`, its value the hex digits as bytes) as text, or null. */
function hashText(hash) {
  return hash?.value instanceof Uint8Array ? text.decode(hash.value) : null;
}

/** Collects the marks of one log, line by line. */
export class MarkCollector {
  constructor() {
    /** @type {Mark[]} */
    this.marks = [];
    /** The line of each activity by its `loggedHash`, to resolve pointers and rejections. */
    this.lineByHash = new Map();
    /** The index in `marks` of each Entered's line, to mark it when it is rejected. */
    this.enteredAt = new Map();
  }

  /** The line a hash names, or null. */
  lineOf(hash) {
    const key = hashText(hash);
    return key === null ? null : (this.lineByHash.get(key) ?? null);
  }

  /**
   * Adds the mark of line `line`: `decoded` is the verifier's decodeLine() of it, or null when
   * it is not a log line.
   */
  add(line, decoded) {
    if (decoded === null) {
      this.marks.push({ line, kind: 'invalid', side: null, trusted: true, follows: null, followsEntered: null, what: '' });
      return;
    }
    const { message } = decoded;
    const control = message.type === 'Control';
    const mark = {
      line,
      kind: control ? 'control' : message.type === 'Seen' ? 'seen' : 'entered',
      side: message.side,
      trusted: true,
      follows: control ? null : this.lineOf(message.prevActivity),
      followsEntered: control ? null : this.lineOf(message.prevEntered),
      what: control ? String(message.control.tag) : '',
    };
    const logged = hashText(decoded.hash);
    if (!control && logged !== null) this.lineByHash.set(logged, line);
    if (mark.kind === 'entered') this.enteredAt.set(line, this.marks.length);
    if (mark.what === 'EnteredRejected') {
      const rejected = this.enteredAt.get(this.lineOf(message.control.enteredRejected));
      if (rejected !== undefined) this.marks[rejected].kind = 'rejected';
    }
    this.marks.push(mark);
  }

  /**
   * Links each activity the verifier accepted as it chained it: `chain` maps its line to its
   * chain hash and the `[prevActivity, prevEntered]` it was signed with (the verifier's
   * onChain).
   * @param {Map<number, { hash: object, pointers: Array<object | null> }>} chain
   */
  link(chain) {
    const lineByChain = new Map();
    for (const [line, { hash }] of chain) lineByChain.set(hashText(hash), line);
    const lineOf = (hash) => {
      const key = hashText(hash);
      return key === null ? null : (lineByChain.get(key) ?? null);
    };
    for (const mark of this.marks) {
      const chained = chain.get(mark.line);
      if (chained === undefined) continue;
      mark.follows = lineOf(chained.pointers[0]);
      mark.followsEntered = lineOf(chained.pointers[1]);
    }
  }

  /** The marks, the failing line (if any) and those after it no longer trusted. */
  finish(failingLine) {
    if (failingLine != null) {
      for (const mark of this.marks) mark.trusted = mark.line < failingLine;
    }
    return this.marks;
  }
}
