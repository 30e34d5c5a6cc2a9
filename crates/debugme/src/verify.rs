//! Offline verification of a session log, with `debug-me --verify`'s verdicts: every signature
//! checks out under a session key the log introduced, and every chain pointer names an earlier
//! activity. Pointers written in the file are ignored and re-derived, as the reference does, so
//! the server's log (which has none) verifies as well as the user's.
//!
//! The reference tries every pair of earlier hashes for every line. Here [`Recovery`] tries
//! the likely pairs first, so an honest log costs about one signature check per line; a line
//! that verifies under no pair still gets the full search, so the verdict is the reference's.

use crate::hash::{self, ActivityKind};
use crate::json::{JsonError, decode_line};
use crate::model::{
    Activity, AnyMessage, Control, ControlAction, Hash, LogLine, Message, PerhapsSigned, PublicKey,
};
use crate::recover::{Pointers, Recovery};
use crate::sign;

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
}

/// A session key the log introduced.
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
    /// Signature checks made, a measure of the work pointer recovery took.
    pub signature_checks: u64,
}

/// The verifier's state while reading a log.
struct Verifier<'g> {
    gpg: &'g mut dyn GpgCheck,
    report: Report,
    /// The session keys introduced so far.
    keys: Vec<PublicKey>,
    recovery: Recovery,
}

/// Verifies the log `text`.
pub fn verify(text: &str, gpg: &mut dyn GpgCheck) -> Result<Report, VerifyError> {
    let mut verifier = Verifier {
        gpg,
        report: Report::default(),
        keys: Vec::new(),
        recovery: Recovery::default(),
    };
    let lines: Vec<(usize, LogLine)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            decode_line(l)
                .map(|parsed| (i + 1, parsed))
                .map_err(|error| VerifyError::Parse { line: i + 1, error })
        })
        .collect::<Result<_, _>>()?;
    verifier.report.lines = lines.len();
    for (index, (line, log_line)) in lines.iter().enumerate() {
        match &log_line.message {
            AnyMessage::User(Message::Control(control)) => {
                verifier.control(*line, control, true)?;
            }
            AnyMessage::Developer(Message::Control(control)) => {
                verifier.control(*line, control, false)?;
            }
            AnyMessage::User(Message::Activity(activity)) => {
                verifier.activity(*line, activity, &lines[index + 1..])?;
            }
            AnyMessage::Developer(Message::Activity(activity)) => {
                verifier.activity(*line, activity, &lines[index + 1..])?;
            }
        }
    }
    verifier.report.signature_checks += verifier.recovery.checks();
    Ok(verifier.report)
}

impl Verifier<'_> {
    fn control(
        &mut self,
        line: usize,
        control: &Control,
        from_user: bool,
    ) -> Result<(), VerifyError> {
        self.report.controls += 1;
        if let ControlAction::SessionKey(key, _) = &control.control {
            // A session key is signed by itself.
            self.report.signature_checks += 1;
            if !sign::control_verifies(key.key(), control) {
                return Err(VerifyError::Signature { line });
            }
            let gpg_signer = match key {
                PerhapsSigned::UnSigned(_) => None,
                PerhapsSigned::GpgSigned(key, statement, export) => Some(
                    self.gpg
                        .check(&hash::public_key(key), statement, export)
                        .map_err(|reason| VerifyError::Gpg { line, reason })?,
                ),
            };
            self.keys.push(key.key().clone());
            self.report.keys.push(SessionKeyInfo {
                line,
                from_user,
                key: key.key().clone(),
                gpg_signer,
                accepted_at: Vec::new(),
                rejected_at: Vec::new(),
            });
            return Ok(());
        }
        let verified = self
            .keys
            .iter()
            .any(|key| sign::control_verifies(key, control));
        self.report.signature_checks += self.keys.len() as u64;
        if !verified {
            return Err(VerifyError::Signature { line });
        }
        match &control.control {
            ControlAction::SessionKeyAccepted(key) | ControlAction::SessionKeyRejected(key) => {
                let accepted = matches!(control.control, ControlAction::SessionKeyAccepted(_));
                for info in self.report.keys.iter_mut().filter(|k| &k.key == key) {
                    if accepted {
                        info.accepted_at.push(line);
                    } else {
                        info.rejected_at.push(line);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn activity<A: ActivityKind + Clone>(
        &mut self,
        line: usize,
        activity: &Activity<A>,
        later: &[(usize, LogLine)],
    ) -> Result<(), VerifyError> {
        self.report.activities += 1;
        let Some(pointers) = self.recovery.find(activity, &self.keys, usize::MAX) else {
            return Err(self.diagnose(line, activity, later));
        };
        self.recovery.push(activity, pointers);
        Ok(())
    }

    /// Why no pair of earlier hashes verifies: the pointers written in the file, or a later
    /// line, make the signature good (so the chain is broken), or nothing does.
    fn diagnose<A: ActivityKind + Clone>(
        &mut self,
        line: usize,
        activity: &Activity<A>,
        later: &[(usize, LogLine)],
    ) -> VerifyError {
        let later_hashes: Vec<(Hash, usize)> = later
            .iter()
            .filter_map(|(target, l)| Some((later_chain_hash(l)?, *target)))
            .collect();
        let target_of = |pointers: &Pointers| {
            later_hashes
                .iter()
                .find(|(h, _)| Some(h) == pointers.0.as_ref() || Some(h) == pointers.1.as_ref())
                .map(|(_, t)| *t)
        };
        let written = (
            activity.prev_activity.clone(),
            activity.prev_entered.clone(),
        );
        if written.0.is_some() && self.recovery.signed_with(activity, &written, &self.keys) {
            return VerifyError::Chain {
                line,
                target: target_of(&written),
            };
        }
        let mut candidates = self.recovery.candidates();
        candidates.extend(later_hashes.iter().map(|(h, _)| Some(h.clone())));
        for pa in &candidates {
            for pe in &candidates {
                let pointers = (pa.clone(), pe.clone());
                if self.recovery.signed_with(activity, &pointers, &self.keys) {
                    return VerifyError::Chain {
                        line,
                        target: target_of(&pointers),
                    };
                }
            }
        }
        VerifyError::Signature { line }
    }
}

/// The chain hash a later line claims (its `loggedHash`), for diagnosing a misordered tail.
fn later_chain_hash(line: &LogLine) -> Option<Hash> {
    match &line.message {
        AnyMessage::User(Message::Activity(a)) if a.prev_activity.is_some() => {
            Some(hash::activity(a))
        }
        AnyMessage::Developer(Message::Activity(a)) if a.prev_activity.is_some() => {
            Some(hash::activity(a))
        }
        _ => line.hash.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::encode_line;
    use crate::model::{Seen, Signature};
    use crate::sign::SessionKey;

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

    /// A user log of `n` Seen lines, signed with pointers, as a user writes it; or with the
    /// pointers nulled, as the server writes it.
    fn user_log(n: usize, server_flavour: bool) -> String {
        let key = SessionKey::from_secret([7; 32]);
        let mut session_key = Control {
            control: ControlAction::SessionKey(
                PerhapsSigned::UnSigned(key.public()),
                b"1".to_vec(),
            ),
            signature: Signature::Other(Vec::new()),
        };
        key.sign_control(&mut session_key);
        let mut lines = vec![LogLine {
            message: AnyMessage::User(Message::Control(session_key)),
            hash: None,
            timestamp: 1.0,
        }];
        let mut previous = None;
        for i in 0..n {
            let mut seen = Activity {
                activity: Seen {
                    seen_data: format!("output {i}\r\n").into_bytes(),
                },
                prev_activity: previous.clone(),
                prev_entered: None,
                elapsed_time: i as f64 * 0.001,
                signature: Signature::Other(Vec::new()),
            };
            key.sign_activity(&mut seen);
            let chain = hash::activity(&seen);
            previous = Some(chain.clone());
            if server_flavour {
                seen.prev_activity = None;
            }
            lines.push(LogLine {
                message: AnyMessage::User(Message::Activity(seen)),
                hash: Some(chain),
                timestamp: 2.0,
            });
        }
        lines.iter().map(|l| encode_line(l) + "\n").collect()
    }

    #[test]
    fn an_honest_log_costs_about_one_check_per_line_in_either_flavour() {
        for server_flavour in [false, true] {
            let report = verify(&user_log(300, server_flavour), &mut StatementHolds).unwrap();
            assert_eq!(report.activities, 300);
            assert!(
                report.signature_checks <= 2 * 301,
                "{} checks for 301 lines",
                report.signature_checks
            );
        }
    }
}
