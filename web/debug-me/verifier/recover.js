/**
 * Recovering the pointers the wire drops (`prevActivity`, `prevEntered`) from the signatures,
 * within the same bounds as crates/debugme/src/recover.rs: the likely pairs first, then pairs
 * of the WINDOW latest activities of each side by increasing distance from the most likely,
 * at most MAX_CHECKS_PER_LINE signature checks a line and CHECKS_PER_LINE a line on average
 * over the log. The order of the candidates and the count of checks are the Rust ones exactly,
 * so that the failing line, its message and `signature_checks` agree.
 * @module
 */

import * as hash from './hash.js';
import { hashKey, sameHash } from './model.js';
import { verifies } from './sign.js';

/** Latest activities of each side a recovered pointer may name. */
export const WINDOW = 64;
/** Most signature checks one line may cost. */
export const MAX_CHECKS_PER_LINE = 256;
/** Signature checks each line adds to the log's allowance. */
export const CHECKS_PER_LINE = 4;
/** Distinct `prevEntered` of the latest activities kept as candidates. */
const RECENT_ENTERED_POINTERS = 8;

/** Most signature checks of a line's search started at once. */
const MAX_BATCH = 32;

/** A signer index, or one of these. */
export const NONE = -1;
export const EXHAUSTED = -2;

/** @typedef {[import('./model.js').Hash | null, import('./model.js').Hash | null]} Pointers */

function maybeKey(h) {
  return h === null ? '-' : hashKey(h);
}

/** A string naming a pair of pointers. @param {Pointers} p */
export function pointersKey(p) {
  return `${maybeKey(p[0])}|${maybeKey(p[1])}`;
}

/** Whether two pairs of pointers are equal. */
export function samePointers(a, b) {
  return sameHash(a[0], b[0]) && sameHash(a[1], b[1]);
}

/** The signature checks a log may still spend (recover.rs `CheckBudget`). */
export class CheckBudget {
  constructor() {
    this.spent = 0;
    this.available = MAX_CHECKS_PER_LINE;
    this.lineLimit = 0;
    this.lineSpent = 0;
  }

  /** Starts a line: earns its share and sets what it may spend. */
  startLine() {
    this.available += CHECKS_PER_LINE;
    this.lineLimit = Math.min(this.available, MAX_CHECKS_PER_LINE);
    this.lineSpent = 0;
  }

  /** Checks the current line may still make. */
  lineLeft() {
    return this.lineLimit - this.lineSpent;
  }

  /** Whether `sig` is `key`'s over `bytes`, or null when the line has no check left. */
  async verify(key, bytes, sig) {
    if (this.lineSpent >= this.lineLimit) return null;
    this.spend();
    return verifies(key, bytes, sig);
  }

  /** Counts one check (that the line had left). */
  spend() {
    this.lineSpent++;
    this.spent++;
    this.available--;
  }
}

/** An activity's hashes that do not depend on its pointers, computed once per line. */
export class Signable {
  constructor(activity) {
    this.content = hash.activityContent(activity);
    this.elapsed = hash.elapsedTime(activity.elapsedTime);
    this.signature = activity.signature;
    this.signatureHash = null;
  }

  /** What the signature covers with `pointers`. */
  signed(pointers) {
    return hash.t('Activity', hash.l([this.content, hash.u(pointers[0]), hash.u(pointers[1]), this.elapsed]));
  }

  /** The chain hash with `pointers`. */
  chainHash(pointers) {
    this.signatureHash ??= hash.signature(this.signature);
    return {
      method: 'SHA512',
      value: hash.t('Activity', hash.l([
        this.content, hash.u(pointers[0]), hash.u(pointers[1]), this.elapsed, this.signatureHash,
      ])),
    };
  }

  /**
   * The index of the first of `keys` that signed it with `pointers`, NONE when none did,
   * EXHAUSTED when the budget ran out first.
   */
  async signer(pointers, keys, budget) {
    const signed = this.signed(pointers);
    for (let index = 0; index < keys.length; index++) {
      const verified = await budget.verify(keys[index], signed, this.signature);
      if (verified === null) return EXHAUSTED;
      if (verified) return index;
    }
    return NONE;
  }
}

/** The chain so far and the search for the next activity's pointers (recover.rs `Recovery`). */
export class Recovery {
  constructor() {
    this.known = new Set();
    /** @type {{place: number, hash: import('./model.js').Hash}[][]} */
    this.recent = [[], []];
    this.count = [0, 0];
    this.newest = null;
    this.newestOf = [null, null];
    this.recentEnteredPointers = [];
    this.budget = new CheckBudget();
  }

  /** Whether `pointer` is absent or names an activity already in the chain. */
  isEarlier(pointer) {
    return pointer === null || this.known.has(hashKey(pointer));
  }

  likely(side) {
    const likely = [];
    if (this.newest !== null) {
      const { side: newestSide, hash: newest, pointers: last } = this.newest;
      if (newestSide === 1) {
        likely.push([newest, newest], [newest, last[1]]);
      } else {
        likely.push([newest, last[1]], [newest, newest]);
      }
      likely.push([newest, null], last);
    }
    const own = this.newestOf[side];
    if (own !== null) likely.push([own.hash, own.pointers[1]]);
    likely.push([null, null]);
    return likely;
  }

  activityCandidates() {
    const merged = [...this.recent[0], ...this.recent[1]];
    merged.sort((a, b) => b.place - a.place);
    return [...merged.map((r) => r.hash), null];
  }

  enteredCandidates() {
    const seen = new Set();
    const out = [];
    const all = [
      ...this.recentEnteredPointers,
      ...this.recent[1].slice().reverse().map((r) => r.hash),
      null,
      ...this.recent[0].slice().reverse().map((r) => r.hash),
    ];
    for (const candidate of all) {
      const key = maybeKey(candidate);
      if (!seen.has(key)) {
        seen.add(key);
        out.push(candidate);
      }
    }
    return out;
  }

  /**
   * Pointers naming earlier activities (or none) under which one of `keys` signed the
   * activity: `{ pointers, key }`, or `{ everyPair }` when no pair tried explains it.
   * @param {Signable} activity
   * @param {number} side 0 for the user, 1 for a developer
   * @param {Uint8Array[]} keys
   * @param {Pointers[]} alreadyTried
   */
  async find(activity, side, keys, alreadyTried) {
    if (keys.length === 0) return { everyPair: true };
    const tried = new Set(alreadyTried.map(pointersKey));
    const recovery = this;
    // The window's candidates are made only when the likely pairs fail (an honest log's
    // lines never need them).
    const candidates = function* candidates(likely) {
      yield* likely;
      const activities = recovery.activityCandidates();
      const entered = recovery.enteredCandidates();
      for (let distance = 0; distance < activities.length + entered.length - 1; distance++) {
        const first = Math.max(0, distance - (entered.length - 1));
        const last = Math.min(distance, activities.length - 1);
        for (let a = first; a <= last; a++) yield [activities[a], entered[distance - a]];
      }
    };
    // The checks in the order the Rust verifier makes them (pair by pair, each under every
    // key), as many as the line may still make.
    const checks = function* checks(likely, budgetLeft) {
      let made = 0;
      for (const pointers of candidates(likely)) {
        const name = pointersKey(pointers);
        if (tried.has(name)) continue;
        tried.add(name);
        const signed = activity.signed(pointers);
        for (let key = 0; key < keys.length; key++) {
          if (made === budgetLeft) {
            yield null;
            return;
          }
          made++;
          yield { pointers, key, signed };
        }
      }
    };
    // Started in batches (WebCrypto works on several at once), counted one by one as in Rust:
    // the checks after the one that succeeds are not counted, and their answers are dropped.
    // The first batch is a single check: the likeliest pair is usually the one.
    const pending = checks(this.likely(side), this.budget.lineLeft());
    let batch = 1;
    for (;;) {
      const started = [];
      let exhausted = false;
      while (started.length < batch) {
        const { value, done } = pending.next();
        if (done) break;
        if (value === null) {
          exhausted = true;
          break;
        }
        const verified = verifies(keys[value.key], value.signed, activity.signature);
        // A check whose answer is dropped must not fail unseen.
        verified.catch(() => {});
        started.push({ ...value, verified });
      }
      for (const check of started) {
        this.budget.spend();
        if (await check.verified) return { pointers: check.pointers, key: check.key };
      }
      if (exhausted) return { everyPair: false };
      if (started.length < batch) return { everyPair: this.count.every((n) => n <= WINDOW) };
      batch = Math.min(batch * 4, MAX_BATCH);
    }
  }

  /** Adds an activity of `side` with `pointers` and chain hash `chainHash` to the chain. */
  push(side, pointers, chainHash) {
    const place = this.count[0] + this.count[1];
    this.known.add(hashKey(chainHash));
    const recent = this.recent[side];
    recent.push({ place, hash: chainHash });
    if (recent.length > WINDOW) recent.shift();
    this.count[side]++;
    const at = this.recentEnteredPointers.findIndex((p) => maybeKey(p) === maybeKey(pointers[1]));
    if (at >= 0) this.recentEnteredPointers.splice(at, 1);
    this.recentEnteredPointers.unshift(pointers[1]);
    this.recentEnteredPointers.length = Math.min(this.recentEnteredPointers.length, RECENT_ENTERED_POINTERS);
    this.newestOf[side] = { hash: chainHash, pointers };
    this.newest = { side, hash: chainHash, pointers };
  }
}
