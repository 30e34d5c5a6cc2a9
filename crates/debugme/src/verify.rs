//! Offline verification of a session log, with `debug-me --verify`'s verdicts: every signature
//! checks out under a session key the log introduced, and every chain pointer names an earlier
//! activity. The pointers are re-derived from the signatures, as the reference does, so the
//! server's log (which has none) verifies as well as the user's.
//!
//! The reference tries every pair of earlier activities for every line, which costs time
//! growing with the square of the log (hours for a long log broken near its end). Here the
//! pointers written in a line are tried first: when they name a later line, or nothing in the
//! log, and the signature holds with them, the verdict (an invalid hash chain) comes at once.
//! Otherwise [`Recovery`] searches a bounded window with a bounded number of signature checks
//! per line, so any log costs time proportional to its length; a line it cannot explain
//! within those bounds gets a verdict that says so ([`VerifyError::Unrecovered`]), unless the
//! search was exhaustive or the line's own pointers were refuted under every key, when it is
//! the reference's "failed to verify message signature".
//!
//! The report also records what protocol 1 cannot prove about a log that verifies: who signed
//! each activity and decision, keys that sign for the other side or before the user accepted
//! them, a second user key, and lines whose unsigned parts were changed.

use std::collections::HashMap;

use crate::hash::{self, ActivityKind};
use crate::json::{JsonError, decode_line};
use crate::model::{
    Activity, AnyMessage, Control, ControlAction, Hash, Message, PerhapsSigned, PublicKey,
    Signature,
};
use crate::recover::{
    CHECKS_PER_LINE, MAX_CHECKS_PER_LINE, Pointers, Recovery, Side, Signable, WINDOW,
};

/// Most GnuPG-signed session keys a log may have: each is checked by running `gpg`, tens of
/// milliseconds, and a real session has one per developer who joined.
pub const MAX_GPG_KEYS: usize = 64;

/// Checks a GnuPG-signed session key: that the clearsigned statement is a valid signature by
/// the exported key over the session key's hash. The caller supplies it (it runs `gpg`).
pub trait GpgCheck {
    /// Verifies `statement` (clearsigned text) against `export` (armoured public key) and
    /// `key_hash` (the 128 hex characters it must state); returns the signer's description
    /// (such as `Dev <dev@example.org>`), or why it failed.
    fn check(&mut self, key_hash: &[u8], statement: &[u8], export: &[u8])
    -> Result<String, String>;
}

/// Why a log failed verification, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The line is not a log line.
    #[error("line {line}: failed to parse a line of the log: {error}")]
    Parse {
        /// The line.
        line: usize,
        /// What is wrong with it.
        error: JsonError,
    },
    /// No session key the log introduced signed this message, whatever the pointers.
    #[error("line {line}: failed to verify message signature")]
    Signature {
        /// The line.
        line: usize,
    },
    /// The message is signed with a pointer to no earlier activity: to a later line, or to
    /// one that is not in the log (a deleted line).
    #[error("line {line}: invalid hash chain: it points to {}", match target {
        Some(target) => format!("line {target}, which comes after it"),
        None => "an activity that is not in the log".to_owned(),
    })]
    Chain {
        /// The line.
        line: usize,
        /// The later line it points to, if it is in the log.
        target: Option<usize>,
    },
    /// A GnuPG-signed session key whose GnuPG signature does not verify.
    #[error("line {line}: bad GnuPG signature: {reason}")]
    Gpg {
        /// The line.
        line: usize,
        /// What gpg said.
        reason: String,
    },
    /// No pair of pointers tried explains the activity's signature, and the bounded search
    /// could not try them all (the reference's search over every pair would take time growing
    /// with the square of the log).
    #[error(
        "line {line}: cannot recover the chain within {checks} candidates: no session key \
         signed it with the pairs of pointers tried, to the {WINDOW} latest activities of each \
         side{}",
        allowance_note(*checks)
    )]
    Unrecovered {
        /// The line.
        line: usize,
        /// The signature checks spent on it.
        checks: u64,
    },
    /// None of the session keys tried signed a control message, and the log holds more keys
    /// than one line may try.
    #[error(
        "line {line}: cannot verify the signature within {checks} candidates: none of the \
         session keys tried signed it, and the log holds more than one line may try{}",
        allowance_note(*checks)
    )]
    TooManyKeys {
        /// The line.
        line: usize,
        /// The signature checks spent on it.
        checks: u64,
    },
    /// One GnuPG-signed session key more than [`MAX_GPG_KEYS`].
    #[error(
        "line {line}: more than {MAX_GPG_KEYS} GnuPG-signed session keys; each runs gpg, and \
         kanava checks at most {MAX_GPG_KEYS} a log"
    )]
    TooManyGpgKeys {
        /// The line.
        line: usize,
    },
}

/// Why a line stopped short of [`MAX_CHECKS_PER_LINE`]: the lines before it spent what the
/// log had earned.
fn allowance_note(checks: u64) -> String {
    if checks < MAX_CHECKS_PER_LINE {
        format!(
            " (the lines before it spent the log's allowance of {CHECKS_PER_LINE} checks a line)"
        )
    } else {
        String::new()
    }
}

impl VerifyError {
    /// The line at fault.
    pub fn line(&self) -> usize {
        match self {
            VerifyError::Parse { line, .. }
            | VerifyError::Signature { line }
            | VerifyError::Chain { line, .. }
            | VerifyError::Gpg { line, .. }
            | VerifyError::Unrecovered { line, .. }
            | VerifyError::TooManyKeys { line, .. }
            | VerifyError::TooManyGpgKeys { line } => *line,
        }
    }
}

/// Lines of a log where something happened: how many, and the first (so that a report stays
/// small whatever the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lines {
    /// How many lines.
    pub count: usize,
    /// The first of them.
    pub first: Option<usize>,
}

impl Lines {
    fn add(&mut self, line: usize) {
        self.count += 1;
        self.first.get_or_insert(line);
    }
}

/// A session key the log introduced (a key announced again is listed once, at its first line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeyInfo {
    /// The line of its SessionKey message.
    pub line: usize,
    /// Whether it is the user's (an unsigned key from the user) or a developer's.
    pub from_user: bool,
    /// The key.
    pub key: PublicKey,
    /// For a GnuPG-signed key, who signed it.
    pub gpg_signer: Option<String>,
    /// Lines where the user accepted it.
    pub accepted_at: Vec<usize>,
    /// Lines where the user rejected it.
    pub rejected_at: Vec<usize>,
    /// Activities it signed.
    pub signed: Lines,
    /// Activities of the other side it signed: a user key's Entered, a developer key's Seen.
    pub signed_for_other_side: Lines,
    /// For a developer key, activities it signed while the user had not accepted it.
    pub signed_unaccepted: Lines,
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Lines read (empty lines skipped).
    pub lines: usize,
    /// Activities (Seen and Entered) in the chain.
    pub activities: usize,
    /// Control messages (outside the chain).
    pub controls: usize,
    /// The session keys, in order of appearance.
    pub keys: Vec<SessionKeyInfo>,
    /// The user's decisions (consent, rejections) signed by a key other than the user's first
    /// session key.
    pub decisions_not_by_user: Lines,
    /// Activities whose unsigned parts were changed after they were written: pointers in the
    /// line that are not those it was signed with, or a `loggedHash` that is none of its hashes.
    pub rewritten: Lines,
    /// Signature checks made, a measure of the work pointer recovery took.
    pub signature_checks: u64,
}

/// The outcome of verifying a log, and the work it took whatever the outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// The report, or why the log was rejected.
    pub outcome: Result<Report, VerifyError>,
    /// Signature checks made.
    pub signature_checks: u64,
}

/// A session key that may sign, with its state.
struct Signer {
    key: PublicKey,
    side: Side,
    /// Its entry in the report.
    info: usize,
    accepted: bool,
}

/// The verifier's state while reading a log.
struct Verifier<'g> {
    gpg: &'g mut dyn GpgCheck,
    report: Report,
    signers: Vec<Signer>,
    by_key: HashMap<PublicKey, usize>,
    /// Signers of each side, oldest first.
    by_side: [Vec<usize>; 2],
    /// The signer of each side's latest message.
    last_signer: [Option<usize>; 2],
    gpg_keys: usize,
    recovery: Recovery,
}

/// Verifies the log `text`.
pub fn verify(text: &str, gpg: &mut dyn GpgCheck) -> Result<Report, VerifyError> {
    verify_log(text, gpg).outcome
}

/// Verifies the log `text`, counting the signature checks whatever the verdict.
pub fn verify_log(text: &str, gpg: &mut dyn GpgCheck) -> Verification {
    let mut verifier = Verifier {
        gpg,
        report: Report::default(),
        signers: Vec::new(),
        by_key: HashMap::new(),
        by_side: [Vec::new(), Vec::new()],
        last_signer: [None, None],
        gpg_keys: 0,
        recovery: Recovery::default(),
    };
    let outcome = verifier.run(text);
    let signature_checks = verifier.recovery.budget.spent();
    Verification {
        outcome: outcome.map(|()| Report {
            signature_checks,
            ..verifier.report
        }),
        signature_checks,
    }
}

impl Verifier<'_> {
    /// Verifies the lines in order, each parsed when it is reached: as the reference does, a
    /// line that is not a log line is the verdict only if every line before it verified.
    fn run(&mut self, text: &str) -> Result<(), VerifyError> {
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l))
            .collect();
        self.report.lines = lines.len();
        for (index, &(line, raw)) in lines.iter().enumerate() {
            let log_line = decode_line(raw).map_err(|error| VerifyError::Parse { line, error })?;
            self.recovery.budget.start_line();
            let later = &lines[index + 1..];
            let logged = log_line.hash.as_ref();
            match &log_line.message {
                AnyMessage::User(Message::Control(control)) => {
                    self.control(line, Side::User, control)?;
                }
                AnyMessage::Developer(Message::Control(control)) => {
                    self.control(line, Side::Developer, control)?;
                }
                AnyMessage::User(Message::Activity(activity)) => {
                    self.activity(line, Side::User, activity, logged, later)?;
                }
                AnyMessage::Developer(Message::Activity(activity)) => {
                    self.activity(line, Side::Developer, activity, logged, later)?;
                }
            }
        }
        Ok(())
    }

    /// The signers to try for a message of `side`, most likely first: the one that signed
    /// that side's latest message, that side's others newest first, then the other side's;
    /// at most as many as the line may check. Also whether that is every signer.
    fn key_order(&self, side: Side) -> (Vec<usize>, bool) {
        let limit = usize::try_from(self.recovery.budget.line_left()).unwrap_or(usize::MAX);
        let own = side.index();
        let last = self.last_signer[own];
        let mut order: Vec<usize> = last.into_iter().collect();
        for &signer in self.by_side[own]
            .iter()
            .rev()
            .chain(self.by_side[1 - own].iter().rev())
        {
            if order.len() >= limit {
                break;
            }
            if Some(signer) != last {
                order.push(signer);
            }
        }
        order.truncate(limit);
        let complete = order.len() == self.signers.len();
        (order, complete)
    }

    fn control(&mut self, line: usize, side: Side, control: &Control) -> Result<(), VerifyError> {
        self.report.controls += 1;
        let signed = hash::control_signed(control);
        if let ControlAction::SessionKey(key, _) = &control.control {
            // A session key is signed by itself.
            let verified = self
                .recovery
                .budget
                .verify(key.key(), &signed, &control.signature);
            if verified != Some(true) {
                return Err(VerifyError::Signature { line });
            }
            let gpg_signer = match key {
                PerhapsSigned::UnSigned(_) => None,
                PerhapsSigned::GpgSigned(key, statement, export) => {
                    self.gpg_keys += 1;
                    if self.gpg_keys > MAX_GPG_KEYS {
                        return Err(VerifyError::TooManyGpgKeys { line });
                    }
                    Some(
                        self.gpg
                            .check(&hash::public_key(key), statement, export)
                            .map_err(|reason| VerifyError::Gpg { line, reason })?,
                    )
                }
            };
            self.introduce(line, side, key.key(), gpg_signer);
            return Ok(());
        }
        let (order, complete) = self.key_order(side);
        let mut signer = None;
        for &candidate in &order {
            let key = &self.signers[candidate].key;
            if self
                .recovery
                .budget
                .verify(key, &signed, &control.signature)
                == Some(true)
            {
                signer = Some(candidate);
                break;
            }
        }
        let Some(signer) = signer else {
            return Err(if complete {
                VerifyError::Signature { line }
            } else {
                VerifyError::TooManyKeys {
                    line,
                    checks: self.recovery.budget.line_spent(),
                }
            });
        };
        self.last_signer[side.index()] = Some(signer);
        let user = self.by_side[Side::User.index()].first().copied();
        match &control.control {
            ControlAction::SessionKeyAccepted(key) | ControlAction::SessionKeyRejected(key) => {
                if Some(signer) != user {
                    self.report.decisions_not_by_user.add(line);
                }
                let accepted = matches!(control.control, ControlAction::SessionKeyAccepted(_));
                if let Some(&decided) = self.by_key.get(key) {
                    let decided = &mut self.signers[decided];
                    decided.accepted = accepted;
                    let info = &mut self.report.keys[decided.info];
                    if accepted {
                        info.accepted_at.push(line);
                    } else {
                        info.rejected_at.push(line);
                    }
                }
            }
            ControlAction::EnteredRejected { .. } if Some(signer) != user => {
                self.report.decisions_not_by_user.add(line);
            }
            _ => {}
        }
        Ok(())
    }

    /// Records a session key whose SessionKey message verified; a key announced again is
    /// already known (and listed once, at its first line).
    fn introduce(&mut self, line: usize, side: Side, key: &PublicKey, gpg_signer: Option<String>) {
        if self.by_key.contains_key(key) {
            return;
        }
        let info = self.report.keys.len();
        self.report.keys.push(SessionKeyInfo {
            line,
            from_user: side == Side::User,
            key: key.clone(),
            gpg_signer,
            accepted_at: Vec::new(),
            rejected_at: Vec::new(),
            signed: Lines::default(),
            signed_for_other_side: Lines::default(),
            signed_unaccepted: Lines::default(),
        });
        let signer = self.signers.len();
        self.signers.push(Signer {
            key: key.clone(),
            side,
            info,
            accepted: false,
        });
        self.by_key.insert(key.clone(), signer);
        self.by_side[side.index()].push(signer);
    }

    fn activity<A: ActivityKind>(
        &mut self,
        line: usize,
        side: Side,
        activity: &Activity<A>,
        logged: Option<&Hash>,
        later: &[(usize, &str)],
    ) -> Result<(), VerifyError> {
        self.report.activities += 1;
        // Nothing can explain a signature that is not Ed25519's 64 bytes.
        if !matches!(&activity.signature, Signature::Ed25519(s) if s.len() == 64) {
            return Err(VerifyError::Signature { line });
        }
        let signable = Signable::new(activity);
        let (order, complete) = self.key_order(side);
        let keys: Vec<&PublicKey> = order.iter().map(|&s| &self.signers[s].key).collect();
        let written: Pointers = (
            activity.prev_activity.clone(),
            activity.prev_entered.clone(),
        );
        let any_written = written.0.is_some() || written.1.is_some();
        // Whether the pointers written in the line were tried under every key and failed.
        let mut written_refuted = false;
        let mut tried = Vec::new();
        let (key, pointers) = 'found: {
            if any_written {
                let earlier =
                    self.recovery.is_earlier(&written.0) && self.recovery.is_earlier(&written.1);
                match signable.signer(&written, &keys, &mut self.recovery.budget) {
                    Some(Some(key)) if earlier => break 'found (key, written.clone()),
                    Some(Some(_)) => {
                        return Err(VerifyError::Chain {
                            line,
                            target: later_target(&written, later),
                        });
                    }
                    Some(None) => written_refuted = complete,
                    None => {}
                }
                tried.push(written.clone());
            }
            match self.recovery.find(&signable, side, &keys, &tried) {
                Ok(found) => (found.key, found.pointers),
                Err(unrecovered) if written_refuted || (unrecovered.every_pair && complete) => {
                    return Err(VerifyError::Signature { line });
                }
                Err(_) => {
                    return Err(VerifyError::Unrecovered {
                        line,
                        checks: self.recovery.budget.line_spent(),
                    });
                }
            }
        };
        let chain_hash = signable.chain_hash(&pointers);
        // A server logs the hash of the activity as it relayed it, without pointers.
        let logged_right = logged.is_none_or(|logged| {
            *logged == chain_hash || *logged == signable.chain_hash(&(None, None))
        });
        if (any_written && pointers != written) || !logged_right {
            self.report.rewritten.add(line);
        }
        self.accept(line, side, order[key], pointers, chain_hash);
        Ok(())
    }

    /// Adds an activity of `side` signed by `signer` with `pointers` to the chain, noting who
    /// signed it and whether they should have.
    fn accept(
        &mut self,
        line: usize,
        side: Side,
        signer: usize,
        pointers: Pointers,
        chain_hash: Hash,
    ) {
        self.last_signer[side.index()] = Some(signer);
        let Signer {
            side: key_side,
            info,
            accepted,
            ..
        } = self.signers[signer];
        let info = &mut self.report.keys[info];
        info.signed.add(line);
        if key_side != side {
            info.signed_for_other_side.add(line);
        }
        if key_side == Side::Developer && !accepted {
            info.signed_unaccepted.add(line);
        }
        self.recovery.push(side, pointers, chain_hash);
    }
}

/// The later line a pointer names, if any: a later activity's chain hash as written (with the
/// pointers in the line, or its `loggedHash`). Searched once, for the verdict; lines that do
/// not parse name nothing.
fn later_target(pointers: &Pointers, later: &[(usize, &str)]) -> Option<usize> {
    let names =
        |hash: &Hash| pointers.0.as_ref() == Some(hash) || pointers.1.as_ref() == Some(hash);
    later.iter().find_map(|&(target, raw)| {
        let line = decode_line(raw).ok()?;
        let written = match &line.message {
            AnyMessage::User(Message::Activity(a)) if a.prev_activity.is_some() => {
                Some(hash::activity(a))
            }
            AnyMessage::Developer(Message::Activity(a)) if a.prev_activity.is_some() => {
                Some(hash::activity(a))
            }
            _ => None,
        };
        let named = written.iter().chain(line.hash.as_ref()).any(names);
        named.then_some(target)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts a GnuPG statement that contains the key's hash, as real gpg would for a good one.
    struct StatementHolds;

    impl GpgCheck for StatementHolds {
        fn check(&mut self, key_hash: &[u8], statement: &[u8], _: &[u8]) -> Result<String, String> {
            let statement = String::from_utf8_lossy(statement);
            let key_hash = String::from_utf8_lossy(key_hash);
            if statement.contains(key_hash.as_ref()) {
                Ok("Dev <dev@example.org>".into())
            } else {
                Err("wrong statement".into())
            }
        }
    }

    const APPENDIX_A: &str = include_str!("../testdata/appendix-a.log");

    fn without_line(text: &str, n: usize) -> String {
        text.lines()
            .enumerate()
            .filter(|(i, _)| *i + 1 != n)
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn a_real_user_log_verifies() {
        let report = verify(APPENDIX_A, &mut StatementHolds).unwrap();
        assert_eq!(
            (report.lines, report.activities, report.controls),
            (3, 2, 1)
        );
        assert_eq!(report.keys.len(), 1);
        assert!(report.keys[0].from_user && report.keys[0].gpg_signer.is_none());
    }

    #[test]
    fn tampering_is_caught_on_its_line() {
        let flipped = APPENDIX_A.replace("session ended (1)", "session ended (0)");
        assert_eq!(
            verify(&flipped, &mut StatementHolds),
            Err(VerifyError::Signature { line: 3 })
        );
        // A deleted middle line leaves the last line pointing at nothing.
        assert_eq!(
            verify(&without_line(APPENDIX_A, 2), &mut StatementHolds),
            Err(VerifyError::Chain {
                line: 2,
                target: None
            })
        );
        // Out of order: the first activity points forward.
        let lines: Vec<&str> = APPENDIX_A.lines().collect();
        let swapped = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[1]);
        assert_eq!(
            verify(&swapped, &mut StatementHolds),
            Err(VerifyError::Chain {
                line: 2,
                target: Some(3)
            })
        );
        let garbage = format!("{}\nnot json\n", lines[0]);
        assert!(matches!(
            verify(&garbage, &mut StatementHolds),
            Err(VerifyError::Parse { line: 2, .. })
        ));
        // Lines are verified as they are read: a bad line before one that does not parse is
        // the verdict, as debug-me reads a log.
        let flipped_then_garbage = format!("{}not json\n", flipped);
        assert_eq!(
            verify(&flipped_then_garbage, &mut StatementHolds),
            Err(VerifyError::Signature { line: 3 })
        );
    }

    #[test]
    fn gpg_signed_keys_go_through_the_check() {
        let controls = include_str!("../testdata/appendix-b-controls.log");
        let report = verify(controls, &mut StatementHolds).unwrap();
        assert_eq!(report.keys.len(), 2);
        assert_eq!(
            report.keys[1].gpg_signer.as_deref(),
            Some("Dev <dev@example.org>")
        );
        assert_eq!(report.keys[1].accepted_at, [3]);
        struct Refuses;
        impl GpgCheck for Refuses {
            fn check(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> Result<String, String> {
                Err("BAD signature".into())
            }
        }
        assert_eq!(
            verify(controls, &mut Refuses),
            Err(VerifyError::Gpg {
                line: 2,
                reason: "BAD signature".into()
            })
        );
    }

    use crate::synthetic::{
        self, Flavour, SyntheticLog, many_keys, misordered_tail, skipping_chain, typing_session,
    };

    /// The most signature checks verification may make on a log of `lines` lines.
    fn linear_bound(lines: usize) -> u64 {
        MAX_CHECKS_PER_LINE + CHECKS_PER_LINE * lines as u64
    }

    #[test]
    fn an_honest_log_costs_about_one_check_per_line_in_either_flavour() {
        for flavour in [Flavour::User, Flavour::Server] {
            let report =
                verify(&typing_session(3_021, flavour).text(), &mut StatementHolds).unwrap();
            assert_eq!(report.activities, 3_018);
            assert!(
                report.signature_checks <= 3_021 + 3_021 / 2,
                "{flavour:?}: {} checks for 3,021 lines",
                report.signature_checks
            );
            assert_eq!(report.rewritten, Lines::default(), "{flavour:?}");
        }
    }

    #[test]
    fn a_long_log_misordered_at_its_end_gets_its_verdict_at_once() {
        let verification = verify_log(&misordered_tail(3_021).text(), &mut StatementHolds);
        assert_eq!(
            verification.outcome,
            Err(VerifyError::Chain {
                line: 3_020,
                target: Some(3_021)
            })
        );
        assert_eq!(
            verification.outcome.unwrap_err().to_string(),
            "line 3020: invalid hash chain: it points to line 3021, which comes after it"
        );
        // One check per line: the pointers written in each line, the last one included.
        assert!(
            verification.signature_checks <= 3_021,
            "{} checks",
            verification.signature_checks
        );
    }

    #[test]
    fn pointers_to_later_lines_anywhere_are_named_at_once() {
        let log = typing_session(3_021, Flavour::User).text();
        let lines: Vec<&str> = log.lines().collect();
        // The activities in reverse: each names the line after it.
        let reversed: String = lines[..3]
            .iter()
            .chain(lines[3..].iter().rev())
            .map(|l| format!("{l}\n"))
            .collect();
        let verification = verify_log(&reversed, &mut StatementHolds);
        assert_eq!(
            verification.outcome,
            Err(VerifyError::Chain {
                line: 4,
                target: Some(5)
            })
        );
        assert!(verification.signature_checks <= 8);
    }

    #[test]
    fn a_line_that_needs_a_search_is_found_and_a_log_of_them_costs_linear_checks() {
        // A short log of such lines verifies: the search finds every pair.
        for flavour in [Flavour::User, Flavour::Server] {
            let report = verify(&skipping_chain(40, flavour).text(), &mut StatementHolds).unwrap();
            assert_eq!(report.activities, 39, "{flavour:?}");
        }
        // A long one in the server's flavour (no pointers to start from) runs out of checks:
        // the line that does is named, and the work stays linear.
        let verification = verify_log(
            &skipping_chain(3_021, Flavour::Server).text(),
            &mut StatementHolds,
        );
        let Err(error @ VerifyError::Unrecovered { line, checks }) = &verification.outcome else {
            panic!("{:?}", verification.outcome);
        };
        assert!(
            *line > 40 && (CHECKS_PER_LINE..MAX_CHECKS_PER_LINE).contains(checks),
            "line {line}, {checks} checks"
        );
        // It says why it stopped short of a line's maximum.
        assert!(
            error.to_string().ends_with("allowance of 4 checks a line)"),
            "{error}"
        );
        assert!(verification.signature_checks <= linear_bound(3_021));
        // The user's flavour has the pointers: one check a line (a few more for the first two
        // Seen, which have none).
        let report = verify(
            &skipping_chain(3_021, Flavour::User).text(),
            &mut StatementHolds,
        )
        .unwrap();
        assert!(
            report.signature_checks <= 3_021 + 4,
            "{}",
            report.signature_checks
        );
    }

    #[test]
    fn many_keys_cost_linear_checks() {
        let report = verify(&many_keys(40).text(), &mut StatementHolds).unwrap();
        assert_eq!(report.keys.len(), 20);
        let verification = verify_log(&many_keys(3_021).text(), &mut StatementHolds);
        assert!(
            matches!(
                verification.outcome,
                Err(VerifyError::Unrecovered { line: 1_511, .. })
            ),
            "{:?}",
            verification.outcome
        );
        assert!(verification.signature_checks <= linear_bound(3_021));
    }

    #[test]
    fn a_tampered_line_deep_in_a_long_log_is_named_within_the_budget() {
        for flavour in [Flavour::User, Flavour::Server] {
            let mut log = typing_session(3_021, flavour);
            let AnyMessage::User(Message::Activity(seen)) = &mut log.line_mut(3_001).message else {
                panic!("line 3001 is a Seen");
            };
            seen.activity.seen_data = b"K".to_vec();
            let verification = verify_log(&log.text(), &mut StatementHolds);
            let expected = match flavour {
                // The pointers the user wrote and signed do not verify under any key.
                Flavour::User => VerifyError::Signature { line: 3_001 },
                // Nothing to start from, and too many pairs to try them all.
                Flavour::Server => VerifyError::Unrecovered {
                    line: 3_001,
                    checks: MAX_CHECKS_PER_LINE,
                },
            };
            assert_eq!(verification.outcome, Err(expected), "{flavour:?}");
            assert!(verification.signature_checks <= linear_bound(3_021));
        }
    }

    /// A typing session with `more` appended.
    fn session_and(more: impl FnOnce(&mut SyntheticLog)) -> Report {
        let mut log = typing_session(20, Flavour::User);
        more(&mut log);
        verify(&log.text(), &mut StatementHolds).unwrap()
    }

    #[test]
    fn a_second_user_key_and_what_it_signed_are_reported() {
        let intruder = synthetic::key(9);
        let report = session_and(|log| {
            log.session_key(Side::User, &intruder);
            log.seen(&intruder, b"forged\r\n", log.honest_pointers(), 0.1);
            log.control(
                Side::User,
                &intruder,
                ControlAction::SessionKeyAccepted(intruder.public()),
            );
        });
        let users: Vec<&SessionKeyInfo> = report.keys.iter().filter(|k| k.from_user).collect();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].signed.count, 9);
        assert_eq!(
            users[1].signed,
            Lines {
                count: 1,
                first: Some(22)
            }
        );
        assert_eq!(
            report.decisions_not_by_user,
            Lines {
                count: 1,
                first: Some(23)
            }
        );
    }

    #[test]
    fn a_key_announced_again_is_listed_once_with_every_decision() {
        let report = session_and(|log| {
            let (user, developer) = (synthetic::key(1), synthetic::key(2));
            for _ in 0..3 {
                log.session_key(Side::Developer, &developer);
                let accepted = ControlAction::SessionKeyAccepted(developer.public());
                log.control(Side::User, &user, accepted);
            }
        });
        assert_eq!(report.keys.len(), 2);
        assert_eq!(report.keys[1].accepted_at, [3, 22, 24, 26]);
        assert_eq!(report.controls, 9);
    }

    #[test]
    fn keys_signing_for_the_other_side_or_unaccepted_are_reported() {
        let stranger = synthetic::key(5);
        let report = session_and(|log| {
            log.session_key(Side::Developer, &stranger);
            log.entered(&stranger, b"x", log.honest_pointers(), 0.1);
            log.seen(&stranger, b"y", log.honest_pointers(), 0.1);
        });
        let stranger = &report.keys[2];
        assert_eq!(stranger.signed.count, 2);
        assert_eq!(stranger.signed_unaccepted.count, 2);
        assert_eq!(stranger.signed_for_other_side.first, Some(23));
        // The accepted developer's typing is not reported.
        assert_eq!(report.keys[1].signed_unaccepted.count, 0);
    }

    #[test]
    fn pointers_changed_after_the_line_was_written_are_reported() {
        let log = typing_session(20, Flavour::User).text();
        let at = log.rfind("\"prevActivity\":{").unwrap();
        let value = at + log[at..].find("\"hashValue\":{\"v\":\"").unwrap() + 18;
        let short = format!("{}{}", &log[..value], &log[value + 118..]);
        let report = verify(&short, &mut StatementHolds).unwrap();
        assert_eq!(
            report.rewritten,
            Lines {
                count: 1,
                first: Some(20)
            }
        );
    }

    #[test]
    fn too_many_gpg_keys_are_refused_before_gpg_runs_for_them() {
        let mut log = SyntheticLog::new(Flavour::User);
        for n in 0..=MAX_GPG_KEYS as u8 {
            let key = synthetic::key(n + 10);
            let hash = hash::public_key(&key.public());
            let action = ControlAction::SessionKey(
                PerhapsSigned::GpgSigned(key.public(), hash, b"export".to_vec()),
                b"1".to_vec(),
            );
            log.control(Side::Developer, &key, action);
        }
        struct Counting(usize);
        impl GpgCheck for Counting {
            fn check(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> Result<String, String> {
                self.0 += 1;
                Ok("Dev <dev@example.org>".into())
            }
        }
        let mut gpg = Counting(0);
        assert_eq!(
            verify(&log.text(), &mut gpg),
            Err(VerifyError::TooManyGpgKeys {
                line: MAX_GPG_KEYS + 1
            })
        );
        assert_eq!(gpg.0, MAX_GPG_KEYS);
    }
}
