// The composer's slash commands, the same words as the SSH chat's (`/join #dev`, `/msg bob hi`),
// parsed without I/O so that they can be unit-tested.

/** The commands and what each does, one line each, for `/help`. */
export const HELP = [
  ["/join ROOM", "open a room, or switch to it (also Alt+1..9, Alt+↑/↓)"],
  ["/part", "leave this room"],
  ["/who", "who is in this room"],
  ["/rooms", "the rooms with people in them"],
  ["/me ACTION", "say what you do"],
  ["/msg NAME TEXT", "a private message"],
  ["/topic [TEXT]", "show or set the room's topic"],
  ["/key [add KEY | remove FINGERPRINT]", "your keys"],
  ["/help", "this list"],
  ["//TEXT", "send a message that starts with /"],
];

/** A room as typed: `dev` or `#dev`. */
export function roomName(word) {
  return word.startsWith("#") ? word.slice(1) : word;
}

/** The text after the first `n` words of `line`, trimmed. */
function rest(line, n) {
  let text = line.trimStart();
  for (let i = 0; i < n; i++) {
    text = text.trimStart();
    const space = text.search(/\s/);
    text = space < 0 ? "" : text.slice(space);
  }
  return text.trim();
}

function usage(text) {
  return { error: `usage: ${text}` };
}

/**
 * Parses what the composer holds. Returns `{say: TEXT}` for a message, `{command, …}` for a
 * command, or `{error}` with what to tell the user.
 */
export function parse(line) {
  if (!line.startsWith("/")) return { say: line };
  if (line.startsWith("//")) return { say: line.slice(1) };
  const body = line.slice(1);
  const words = body.trim().split(/\s+/).filter(Boolean);
  const [name = "", first, second, third] = words;
  const none = (command, text) => (first === undefined ? { command } : usage(text));
  switch (name) {
    case "help":
      return none("help", "/help");
    case "part":
      return none("part", "/part");
    case "who":
    case "names":
      return none("who", "/who");
    case "rooms":
      return none("rooms", "/rooms");
    case "join": {
      if (first === undefined || second !== undefined) return usage("/join ROOM");
      const room = roomName(first);
      return room ? { command: "join", room } : usage("/join ROOM");
    }
    case "me": {
      const action = rest(body, 1);
      return action ? { command: "me", action } : usage("/me ACTION");
    }
    case "msg": {
      const text = rest(body, 2);
      if (first === undefined || !text) return usage("/msg NAME TEXT");
      return { command: "msg", to: first.replace(/^@/, ""), text };
    }
    case "topic": {
      const text = rest(body, 1);
      return text ? { command: "topic", text } : { command: "topic" };
    }
    case "key":
      if (first === undefined) return { command: "keys" };
      if (first === "add" && second !== undefined) return { command: "key_add", key: rest(body, 2) };
      if (first === "remove" && second !== undefined && third === undefined) {
        return { command: "key_remove", fingerprint: second };
      }
      return usage("/key, /key add PUBLIC-KEY, /key remove FINGERPRINT");
    default:
      return { error: `unknown command /${name}; /help lists them` };
  }
}
