/**
 * What `kanava verify --json` says about a log (crates/debugme-tools/src/report.rs): the
 * verdict, what the log holds, and, as warnings, what protocol 1 cannot prove even of a log
 * that verifies. The texts are the Rust ones, word for word.
 * @module
 */

import { hex } from './model.js';

function count(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function activities(lines) {
  const first = lines.first === null ? '' : ` (first at line ${lines.first})`;
  return `${count(lines.count, 'activity', 'activities')}${first}`;
}

function sameKey(a, b) {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** The warnings of a report that verified (report.rs `warnings`). */
export function warnings(report) {
  const out = [
    'the log may be truncated: protocol 1 has no signed end record',
    'control messages (session keys, consent, rejections, chat) are signed but not chained: '
      + 'they could have been removed or reordered',
    'the times of day in the log are not signed: only the time between activities is',
  ];
  const user = report.keys.find((k) => k.fromUser);
  if (user !== undefined) {
    out.push('the user\'s session key is signed only by itself: the log cannot prove who the user was');
  }
  for (const key of report.keys) {
    const whose = key.fromUser ? 'user' : 'developer';
    if (key.fromUser && user !== undefined && !sameKey(user.key, key.key)) {
      out.push(`user key ${hex(key.key)} (line ${key.line}) is a second user key: a user key is `
        + 'signed only by itself, so anyone can add one to a log; it signed '
        + `${activities(key.signed)}`);
    }
    if (!key.fromUser && key.acceptedAt.length === 0) {
      out.push(`developer key ${hex(key.key)} was never accepted in this log`);
    }
    if (key.signedUnaccepted.count > 0) {
      out.push(`developer key ${hex(key.key)} signed ${activities(key.signedUnaccepted)} while the `
        + 'user had not accepted it');
    }
    if (key.signedForOtherSide.count > 0) {
      const other = key.fromUser ? 'developer' : 'user';
      out.push(`${whose} key ${hex(key.key)} signed ${activities(key.signedForOtherSide)} that the `
        + `log gives as the ${other}'s`);
    }
  }
  const decisions = report.decisionsNotByUser;
  if (decisions.first !== null) {
    out.push('the user\'s decisions (consent, rejections) on '
      + `${count(decisions.count, 'line', 'lines')} (first at line ${decisions.first}) are `
      + 'signed by a key other than the user\'s first session key');
  }
  if (report.rewritten.count > 0) {
    out.push(`${activities(report.rewritten)} in the log hold pointers or a loggedHash that no `
      + 'signature covers and that are not those the line was signed with: the log was changed '
      + 'after it was written');
  }
  return out;
}

/**
 * The verdict object, keys in `kanava verify --json`'s order (without `path`).
 * @param {object} report the verifier's report, or null on failure
 * @param {{ line: number | null, error: string } | null} rejection
 * @param {number} signatureChecks
 */
export function verdictJson(report, rejection, signatureChecks) {
  if (rejection !== null) {
    return { verified: false, line: rejection.line, error: rejection.error, signature_checks: signatureChecks };
  }
  return {
    verified: true,
    lines: report.lines,
    activities: report.activities,
    controls: report.controls,
    signature_checks: signatureChecks,
    keys: report.keys.map((k) => ({
      activities_signed: k.signed.count,
      line: k.line,
      role: k.fromUser ? 'user' : 'developer',
      key: hex(k.key),
      gpg_signer: k.gpgSigner,
      accepted_at: [...k.acceptedAt],
      rejected_at: [...k.rejectedAt],
    })),
    warnings: warnings(report),
  };
}
