// What of a user's terminal output the page passes on, to its own terminal and to an
// asciicast: string sequences (OSC, DCS, SOS, PM, APC) can set a title, write the clipboard
// or query the viewer's terminal, so they are dropped, as kanava's own replay does
// (crates/debugme-tools/src/terminal.rs, whose states this follows byte for byte).

const GROUND = 0;
const ESCAPE = 1;
const C2 = 2;
const STRING = 3;
const STRING_ESCAPE = 4;
const STRING_C2 = 5;

/** Whether `byte`, after ESC, starts a string sequence (OSC `]`, DCS `P`, SOS `X`, PM `^`, APC `_`). */
function stringAfterEscape(byte) {
  return byte === 0x5d || byte === 0x50 || byte === 0x58 || byte === 0x5e || byte === 0x5f;
}

/** Whether `byte`, after 0xC2, is the C1 code point of a string sequence (UTF-8 U+0090, 98, 9D-9F). */
function stringAfterC2(byte) {
  return byte === 0x90 || byte === 0x98 || byte === 0x9d || byte === 0x9e || byte === 0x9f;
}

/** Drops string sequences from a byte stream that may split them across chunks. */
export class StringSequenceFilter {
  constructor() {
    this.state = GROUND;
  }

  /** The bytes of `chunk` (a Uint8Array) that may be shown; an incomplete prefix of a
   *  sequence is held until the next chunk. */
  filter(chunk) {
    const out = new Uint8Array(chunk.length + 1);
    let n = 0;
    for (const byte of chunk) {
      switch (this.state) {
        case GROUND:
          if (byte === 0x1b) this.state = ESCAPE;
          else if (byte === 0xc2) this.state = C2;
          else out[n++] = byte;
          break;
        case ESCAPE:
        case C2:
          // ESC and 0xC2 are only written together with the byte after them, so that what
          // follows a dropped sequence cannot complete an introducer.
          if (this.state === ESCAPE && stringAfterEscape(byte)) this.state = STRING;
          else if (this.state === C2 && stringAfterC2(byte)) this.state = STRING;
          else if (byte === 0x1b) this.state = ESCAPE;
          else if (byte === 0xc2) this.state = C2;
          else {
            out[n++] = this.state === ESCAPE ? 0x1b : 0xc2;
            out[n++] = byte;
            this.state = GROUND;
          }
          break;
        default:
          if (byte === 0x07) this.state = GROUND;
          else if (this.state === STRING_ESCAPE && byte === 0x5c) this.state = GROUND;
          else if (this.state === STRING_C2 && byte === 0x9c) this.state = GROUND;
          else if (byte === 0x1b) this.state = STRING_ESCAPE;
          else if (byte === 0xc2) this.state = STRING_C2;
          else this.state = STRING;
      }
    }
    return out.subarray(0, n);
  }
}
