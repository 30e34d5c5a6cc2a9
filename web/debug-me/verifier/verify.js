/**
 * Verification of a session, message by message, with `kanava verify`'s verdicts: a port of
 * crates/debugme/src/verify.rs. Every signature must check out under a session key the log
 * introduced, and every chain pointer must name an earlier activity; pointers are re-derived
 * from the signatures within recover.js's bounds, so the server's log and the wire (which have
 * none) verify as well as the user's log.
 *
 * The Rust verifier reads a whole log; this one is fed a message at a time. The only thing the
 * Rust verifier looks ahead for is the line a forward pointer names (in the message of an
 * invalid hash chain): here that failure is kept open, and the lines pushed after it are
 * searched for the line it names, so the final verdict is the same.
 * @module
 */

import * as hash from './hash.js';
import { sameHash } from './model.js';
import {
  CHECKS_PER_LINE, MAX_CHECKS_PER_LINE, NONE, Recovery, Signable, WINDOW, samePointers,
} from './recover.js';

/** Most GnuPG-signed session keys a log may have (verify.rs `MAX_GPG_KEYS`). */
export const MAX_GPG_KEYS = 64;

const USER = 0;
const DEVELOPER = 1;

function allowanceNote(checks) {
  return checks < MAX_CHECKS_PER_LINE
    ? ` (the lines before it spent the log's allowance of ${CHECKS_PER_LINE} checks a line)`
    : '';
}

/** Why a session failed verification: verify.rs `VerifyError`, its text after `line N: `. */
export class Failure {
  constructor(line, kind, fields = {}) {
    this.line = line;
    this.kind = kind;
    Object.assign(this, fields);
  }

  /** The reason, without the line. */
  reason() {
    switch (this.kind) {
      case 'parse': return `failed to parse a line of the log: ${this.error}`;
      case 'signature': return 'failed to verify message signature';
      case 'chain': return `invalid hash chain: it points to ${this.target === null
        ? 'an activity that is not in the log'
        : `line ${this.target}, which comes after it`}`;
      case 'gpg': return `bad GnuPG signature: ${this.error}`;
      case 'unrecovered':
        return `cannot recover the chain within ${this.checks} candidates: no session key signed `
          + `it with the pairs of pointers tried, to the ${WINDOW} latest activities of each side`
          + allowanceNote(this.checks);
      case 'too-many-keys':
        return `cannot verify the signature within ${this.checks} candidates: none of the session `
          + 'keys tried signed it, and the log holds more than one line may try'
          + allowanceNote(this.checks);
      case 'too-many-gpg-keys':
        return `more than ${MAX_GPG_KEYS} GnuPG-signed session keys; each runs gpg, and kanava `
          + `checks at most ${MAX_GPG_KEYS} a log`;
      default: return this.error;
    }
  }
}

/** Lines where something happened: how many, and the first. */
class Lines {
  constructor() {
    this.count = 0;
    this.first = null;
  }

  add(line) {
    this.count++;
    this.first ??= line;
  }
}

function keyString(key) {
  let text = '';
  for (const byte of key) text += String.fromCharCode(byte);
  return text;
}

/** The verifier's state (verify.rs `Verifier`), fed one message at a time. */
export class Verifier {
  /**
   * @param {(control: import('./model.js').Control) => Promise<string>} gpg the signer of a GnuPG-signed SessionKey, or throws its reason
   * @param {((line: number, chainHash: object, pointers: Array<object | null>) => void) | null} onChain
   *   told of each activity accepted into the chain: its line, its chain hash and the pointers
   *   it was signed with (written in the log, or recovered)
   */
  constructor(gpg, onChain = null) {
    this.gpg = gpg;
    this.onChain = onChain;
    this.report = {
      lines: 0,
      activities: 0,
      controls: 0,
      keys: [],
      decisionsNotByUser: new Lines(),
      rewritten: new Lines(),
    };
    this.signers = [];
    this.byKey = new Map();
    this.bySide = [[], []];
    this.lastSigner = [null, null];
    this.gpgKeys = 0;
    this.recovery = new Recovery();
    /** @type {Failure | null} */
    this.failure = null;
    /** A chain failure whose forward target is still looked for in later lines. */
    this.pendingChain = null;
  }

  /** Signature checks made so far. */
  get signatureChecks() {
    return this.recovery.budget.spent;
  }

  /**
   * Verifies one decoded message at `line`; records the failure and returns false when it
   * does not verify. `logged` is the line's `loggedHash` (null on the wire).
   */
  async push(line, message, logged) {
    this.recovery.budget.startLine();
    try {
      const side = message.side === 'user' ? USER : DEVELOPER;
      if (message.type === 'Control') await this.control(line, side, message);
      else await this.activity(line, side, message, logged);
      return true;
    } catch (error) {
      if (!(error instanceof Failure)) throw error;
      this.failure = error;
      return false;
    }
  }

  /** Records a line that could not be decoded. */
  fail(failure) {
    this.failure = failure;
  }

  /**
   * After a chain failure, looks at a later line (its decoded form, or null when it does not
   * decode) for the activity the failing line named (verify.rs `later_target`).
   */
  lookAhead(line, decoded) {
    const pending = this.pendingChain;
    if (pending === null || decoded === null) return;
    const written = [];
    const m = decoded.message;
    if (m.type !== 'Control' && m.prevActivity !== null) written.push(hash.activity(m));
    if (decoded.hash !== null) written.push(decoded.hash);
    const names = (h) => sameHash(pending[0], h) || sameHash(pending[1], h);
    if (written.some(names)) {
      this.failure.target = line;
      this.pendingChain = null;
    }
  }

  keyOrder(side) {
    const limit = this.recovery.budget.lineLeft();
    const last = this.lastSigner[side];
    const order = last === null ? [] : [last];
    const candidates = [...this.bySide[side]].reverse().concat([...this.bySide[1 - side]].reverse());
    for (const signer of candidates) {
      if (order.length >= limit) break;
      if (signer !== last) order.push(signer);
    }
    order.length = Math.min(order.length, limit);
    return [order, order.length === this.signers.length];
  }

  async control(line, side, message) {
    this.report.controls++;
    const signed = hash.controlSigned(message);
    const action = message.control;
    if (action.tag === 'SessionKey') {
      const verified = await this.recovery.budget.verify(action.key.key, signed, message.signature);
      if (verified !== true) throw new Failure(line, 'signature');
      let gpgSigner = null;
      if (action.key.tag === 'GpgSigned') {
        this.gpgKeys++;
        if (this.gpgKeys > MAX_GPG_KEYS) throw new Failure(line, 'too-many-gpg-keys');
        try {
          gpgSigner = await this.gpg(message);
        } catch (error) {
          throw new Failure(line, 'gpg', { error: error?.message ?? String(error) });
        }
      }
      this.introduce(line, side, action.key.key, gpgSigner);
      return;
    }
    const [order, complete] = this.keyOrder(side);
    let signer = null;
    for (const candidate of order) {
      const key = this.signers[candidate].key;
      if (await this.recovery.budget.verify(key, signed, message.signature) === true) {
        signer = candidate;
        break;
      }
    }
    if (signer === null) {
      throw complete
        ? new Failure(line, 'signature')
        : new Failure(line, 'too-many-keys', { checks: this.recovery.budget.lineSpent });
    }
    this.lastSigner[side] = signer;
    const user = this.bySide[USER][0] ?? null;
    if (action.tag === 'SessionKeyAccepted' || action.tag === 'SessionKeyRejected') {
      if (signer !== user) this.report.decisionsNotByUser.add(line);
      const accepted = action.tag === 'SessionKeyAccepted';
      const decided = this.byKey.get(keyString(action.key));
      if (decided !== undefined) {
        this.signers[decided].accepted = accepted;
        const info = this.report.keys[this.signers[decided].info];
        (accepted ? info.acceptedAt : info.rejectedAt).push(line);
      }
    } else if (action.tag === 'EnteredRejected' && signer !== user) {
      this.report.decisionsNotByUser.add(line);
    }
  }

  introduce(line, side, key, gpgSigner) {
    const name = keyString(key);
    if (this.byKey.has(name)) return;
    const info = this.report.keys.length;
    this.report.keys.push({
      line,
      fromUser: side === USER,
      key,
      gpgSigner,
      acceptedAt: [],
      rejectedAt: [],
      signed: new Lines(),
      signedForOtherSide: new Lines(),
      signedUnaccepted: new Lines(),
    });
    const signer = this.signers.length;
    this.signers.push({ key, side, info, accepted: false });
    this.byKey.set(name, signer);
    this.bySide[side].push(signer);
  }

  async activity(line, side, activity, logged) {
    this.report.activities++;
    if (activity.signature.kind !== 'Ed25519' || activity.signature.bytes.length !== 64) {
      throw new Failure(line, 'signature');
    }
    const signable = new Signable(activity);
    const [order, complete] = this.keyOrder(side);
    const keys = order.map((s) => this.signers[s].key);
    const written = [activity.prevActivity, activity.prevEntered];
    const anyWritten = written[0] !== null || written[1] !== null;
    let writtenRefuted = false;
    const tried = [];
    let found = null;
    if (anyWritten) {
      const earlier = this.recovery.isEarlier(written[0]) && this.recovery.isEarlier(written[1]);
      const signer = await signable.signer(written, keys, this.recovery.budget);
      if (signer >= 0 && earlier) {
        found = { key: signer, pointers: written };
      } else if (signer >= 0) {
        this.pendingChain = written;
        throw new Failure(line, 'chain', { target: null });
      } else if (signer === NONE) {
        writtenRefuted = complete;
      }
      tried.push(written);
    }
    if (found === null) {
      const result = await this.recovery.find(signable, side, keys, tried);
      if (result.pointers === undefined) {
        if (writtenRefuted || (result.everyPair && complete)) throw new Failure(line, 'signature');
        throw new Failure(line, 'unrecovered', { checks: this.recovery.budget.lineSpent });
      }
      found = result;
    }
    const { pointers } = found;
    const chainHash = signable.chainHash(pointers);
    const loggedRight = logged === null || sameHash(logged, chainHash)
      || sameHash(logged, signable.chainHash([null, null]));
    if ((anyWritten && !samePointers(pointers, written)) || !loggedRight) {
      this.report.rewritten.add(line);
    }
    this.accept(line, side, order[found.key], pointers, chainHash);
  }

  accept(line, side, signer, pointers, chainHash) {
    this.lastSigner[side] = signer;
    const { side: keySide, info: index, accepted } = this.signers[signer];
    const info = this.report.keys[index];
    info.signed.add(line);
    if (keySide !== side) info.signedForOtherSide.add(line);
    if (keySide === DEVELOPER && !accepted) info.signedUnaccepted.add(line);
    this.recovery.push(side, pointers, chainHash);
    this.onChain?.(line, chainHash, pointers);
  }
}
