// OpenSSH key and signature formats for a WebCrypto Ed25519 key: the page's key is shown as an
// OpenSSH public key (so it can be added from SSH with `/key add`) and proves it holds the key by
// an SSHSIG signature (OpenSSH PROTOCOL.sshsig), which the server checks as ssh-keygen would.
// No DOM here, so that Node can run it in the unit tests.

/** The SSHSIG namespace of a kanava web login. */
export const NAMESPACE = "kanava-web";

/** The comment after a browser key in OpenSSH format. */
export const KEY_COMMENT = "kanava-web";

const KEY_TYPE = "ssh-ed25519";
const MAGIC = "SSHSIG";
const HASH = "sha512";
const encoder = new TextEncoder();

/** Bytes of a string (UTF-8) or of bytes, as a Uint8Array. */
function bytesOf(data) {
  if (typeof data === "string") return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  return new Uint8Array(data);
}

/** Concatenation of byte arrays. */
function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** SSH wire `string`: a big-endian u32 length, then the bytes. */
export function sshString(data) {
  const bytes = bytesOf(data);
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

/** Standard base64 (with padding) of bytes. */
export function base64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** The SSH public key blob of a raw 32-byte Ed25519 public key. */
export function publicKeyBlob(raw) {
  const key = bytesOf(raw);
  if (key.length !== 32) throw new Error(`an Ed25519 public key has 32 bytes, not ${key.length}`);
  return concat([sshString(KEY_TYPE), sshString(key)]);
}

/** The public key in OpenSSH format: `ssh-ed25519 AAAA… kanava-web`. */
export function openSshPublicKey(raw, comment = KEY_COMMENT) {
  return `${KEY_TYPE} ${base64(publicKeyBlob(raw))} ${comment}`;
}

/** The key's fingerprint as OpenSSH prints it: `SHA256:` and unpadded base64. */
export async function fingerprint(raw, subtle = globalThis.crypto.subtle) {
  const digest = new Uint8Array(await subtle.digest("SHA-256", publicKeyBlob(raw)));
  return `SHA256:${base64(digest).replace(/=+$/, "")}`;
}

/** The message a login signs: the name, a line break, the server's nonce exactly as sent. */
export function loginMessage(name, nonce) {
  return `${name}\n${nonce}`;
}

/**
 * Signs `message` (a string, signed as UTF-8, or bytes) with an Ed25519 key pair and returns the
 * SSHSIG blob. `publicRaw` is the raw 32-byte public key of `privateKey`.
 */
export async function sign(
  { privateKey, publicRaw },
  message,
  namespace = NAMESPACE,
  subtle = globalThis.crypto.subtle,
) {
  const digest = new Uint8Array(await subtle.digest("SHA-512", bytesOf(message)));
  const signed = concat([
    encoder.encode(MAGIC),
    sshString(namespace),
    sshString(""),
    sshString(HASH),
    sshString(digest),
  ]);
  const signature = new Uint8Array(await subtle.sign({ name: "Ed25519" }, privateKey, signed));
  const version = new Uint8Array(4);
  new DataView(version.buffer).setUint32(0, 1);
  return concat([
    encoder.encode(MAGIC),
    version,
    sshString(publicKeyBlob(publicRaw)),
    sshString(namespace),
    sshString(""),
    sshString(HASH),
    sshString(concat([sshString(KEY_TYPE), sshString(signature)])),
  ]);
}

/** The SSHSIG blob armoured as `ssh-keygen -Y sign` writes it. */
export function armour(blob) {
  const lines = base64(blob).match(/.{1,70}/g) ?? [];
  return ["-----BEGIN SSH SIGNATURE-----", ...lines, "-----END SSH SIGNATURE-----", ""].join("\n");
}
