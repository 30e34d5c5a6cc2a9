// The browser's identity: an Ed25519 key pair made once with WebCrypto (the private key cannot
// be exported) and kept in IndexedDB, and the name and open rooms kept in localStorage, so that a
// reload logs in again by itself.

import { fingerprint, openSshPublicKey } from "./sshsig.js";

const DB = "kanava";
const STORE = "keys";
const KEY_ID = "identity";
const SETTINGS = "kanava.settings";

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function openDatabase() {
  const open = indexedDB.open(DB, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(STORE);
  return request(open);
}

async function stored(db) {
  return request(db.transaction(STORE).objectStore(STORE).get(KEY_ID));
}

/**
 * The browser's key pair, made on first use: `{privateKey, publicRaw, openSsh, fingerprint}`.
 * Two tabs opening at once agree on one key: the first one stored wins.
 */
export async function loadIdentity() {
  const db = await openDatabase();
  try {
    let pair = await stored(db);
    if (!pair) {
      const made = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
      try {
        await request(
          db
            .transaction(STORE, "readwrite")
            .objectStore(STORE)
            .add({ privateKey: made.privateKey, publicKey: made.publicKey }, KEY_ID),
        );
        pair = made;
      } catch {
        pair = await stored(db);
      }
    }
    const publicRaw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    return {
      privateKey: pair.privateKey,
      publicRaw,
      openSsh: openSshPublicKey(publicRaw),
      fingerprint: await fingerprint(publicRaw),
    };
  } finally {
    db.close();
  }
}

/** The settings kept between visits: `{name, rooms, current, read: {room: seq}}`. */
export function loadSettings() {
  try {
    const settings = JSON.parse(localStorage.getItem(SETTINGS) ?? "{}");
    return {
      name: typeof settings.name === "string" ? settings.name : null,
      rooms: Array.isArray(settings.rooms) ? settings.rooms.filter((r) => typeof r === "string") : [],
      current: typeof settings.current === "string" ? settings.current : null,
      read: settings.read && typeof settings.read === "object" ? settings.read : {},
    };
  } catch {
    return { name: null, rooms: [], current: null, read: {} };
  }
}

/** Keeps the settings; storage that is full or off only loses the automatic login. */
export function saveSettings(settings) {
  try {
    localStorage.setItem(SETTINGS, JSON.stringify(settings));
  } catch {
    // Private browsing or a full quota: the page works, it just will not log in by itself.
  }
}

/** Forgets the name and rooms (the key stays: it is how the name is proven). */
export function forgetSettings() {
  try {
    localStorage.removeItem(SETTINGS);
  } catch {
    // Nothing was kept.
  }
}
