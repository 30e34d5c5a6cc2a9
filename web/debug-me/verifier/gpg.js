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
  const primary = await gpgPrimaryUserId(openpgp, signing);
  if (primary !== null) {
    userIds.splice(userIds.indexOf(primary), 1);
    userIds.unshift(primary);
  }
  return { signer: userIds[0] ?? fingerprint, fingerprint, userIds };
}

/** gpg's `cmp_user_ids`: the longer user id, then the greater bytes. */
function compareUserIds(a, b) {
  if (a.length !== b.length) return a.length - b.length;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/**
 * The user id gpg lists first: gpg's primary (getkey.c `merge_selfsigs_main`): among the user
 * ids whose latest valid self-signature flags them primary, else among all, the one with the
 * latest such signature, ties going to `cmp_user_ids`. (openpgp.js's getPrimaryUser breaks
 * ties by packet order instead, which names another user id for uids made in one second.)
 */
async function gpgPrimaryUserId(openpgp, key) {
  const primaryKey = key.keyPacket;
  const best = { flagged: null, other: null };
  for (const user of key.users) {
    if (!user.userID) continue;
    const certifications = [...user.selfCertifications].sort((a, b) => b.created - a.created);
    let latest = null;
    for (const certification of certifications) {
      try {
        if (certification.revoked || await user.isRevoked(certification)) continue;
        await certification.verify(primaryKey, openpgp.enums.signature.certGeneric,
          { userID: user.userID, key: primaryKey });
        latest = certification;
        break;
      } catch {
        // An invalid self-signature does not count, as gpg drops it.
      }
    }
    if (latest === null) continue;
    const candidate = {
      created: Math.floor(latest.created.getTime() / 1000),
      bytes: new TextEncoder().encode(user.userID.userID),
      id: user.userID.userID,
    };
    const which = latest.isPrimaryUserID ? 'flagged' : 'other';
    const current = best[which];
    if (current === null || candidate.created > current.created
      || (candidate.created === current.created && compareUserIds(candidate.bytes, current.bytes) > 0)) {
      best[which] = candidate;
    }
  }
  return (best.flagged ?? best.other)?.id ?? null;
}
