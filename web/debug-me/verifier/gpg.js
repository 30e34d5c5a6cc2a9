/**
 * Checks a developer's GnuPG-signed session key with openpgp.js, as
 * crates/debugme-tools/src/gpg.rs checks it with the system's gpg (spec §9): the clearsigned
 * statement must carry a good signature by a key of the armoured export, and its text must be
 * the session key's hash, compared line by line ignoring empty lines. openpgp.js is imported
 * only when a key is checked, so a page that never meets a GnuPG signature never loads it.
 * @module
 */

import { publicKey } from './hash.js';

const decoder = new TextDecoder('utf-8', { ignoreBOM: true });

function nonemptyLines(text) {
  return text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l)).filter((l) => l !== '');
}

/**
 * Checks the GnuPG signature of a SessionKey control message and says who signed it: the
 * signing key's first user id as gpg lists it (the primary one), else its primary
 * fingerprint (uppercase hex), as `kanava verify` reports `gpg_signer`. Throws Error(reason) when it does not hold.
 * @param {import('./model.js').Control} control a SessionKey whose key is GpgSigned
 * @returns {Promise<{ signer: string, fingerprint: string, userIds: string[] }>}
 */
export async function checkGpg(control) {
  const key = control.control.key;
  const openpgp = await import('openpgp');
  let keys;
  try {
    keys = await openpgp.readKeys({ armoredKeys: decoder.decode(key.export) });
  } catch (error) {
    throw new Error(`the key export does not import: ${error.message}`);
  }
  let message;
  try {
    message = await openpgp.readCleartextMessage({ cleartextMessage: decoder.decode(key.statement) });
  } catch {
    throw new Error('no good signature');
  }
  let result;
  try {
    result = await openpgp.verify({ message, verificationKeys: keys });
  } catch {
    throw new Error('no good signature');
  }
  let signing = null;
  for (const signature of result.signatures) {
    try {
      await signature.verified;
    } catch {
      continue;
    }
    signing = keys.find((k) => k.getKeys(signature.keyID).length > 0) ?? null;
    if (signing !== null) break;
  }
  if (signing === null) throw new Error('no good signature');
  const expected = decoder.decode(publicKey(key.key));
  const same = (a, b) => a.length === b.length && a.every((line, i) => line === b[i]);
  if (!same(nonemptyLines(String(result.data)), nonemptyLines(expected))) {
    throw new Error('the signed statement is not this session key\'s hash');
  }
  const fingerprint = signing.getFingerprint().toUpperCase();
  const userIds = signing.users.filter((u) => u.userID).map((u) => u.userID.userID);
  // gpg lists the primary user id first (it moves it to the front on import).
  let primary = null;
  try {
    primary = (await signing.getPrimaryUser()).user.userID?.userID ?? null;
  } catch {
    primary = null;
  }
  if (primary !== null) userIds.splice(userIds.indexOf(primary), 1), userIds.unshift(primary);
  return { signer: userIds[0] ?? fingerprint, fingerprint, userIds };
}
