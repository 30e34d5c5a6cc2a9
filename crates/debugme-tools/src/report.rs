//! What `kanava verify` says about a log: the verdict, what the log holds, and, as warnings,
//! what protocol 1 cannot prove even of a log that verifies (the verifier's report records
//! who signed what; this module says what that means to a reader).

use std::path::Path;

use kanava_debugme::verify::{GpgCheck, Lines, Report, SessionKeyInfo, VerifyError, verify_log};
use serde_json::{Value, json};

/// The verdict on one log file.
#[derive(Debug)]
pub struct Verdict {
    /// The file, as named on the command line.
    pub path: String,
    /// The report, or why the log was rejected.
    pub outcome: Result<Report, Rejection>,
    /// Signature checks made, whatever the outcome.
    pub signature_checks: u64,
}

/// Why a log was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The line at fault, when there is one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl From<VerifyError> for Rejection {
    fn from(error: VerifyError) -> Self {
        Rejection {
            line: Some(error.line()),
            message: error.to_string(),
        }
    }
}

/// Reads and verifies the log at `path`, checking GnuPG-signed keys with `gpg`.
pub fn verify_path(path: &Path, gpg: &mut dyn GpgCheck) -> Verdict {
    let mut signature_checks = 0;
    let outcome = match std::fs::read(path) {
        Err(error) => Err(Rejection {
            line: None,
            message: format!("cannot read it: {error}"),
        }),
        Ok(bytes) => match String::from_utf8(bytes) {
            Err(error) => {
                let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
                let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
                // The lines before it are verified first, as the reference reads a log.
                let whole_lines = valid
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(&valid[..0], |end| &valid[..=end]);
                let verification = verify_log(&String::from_utf8_lossy(whole_lines), gpg);
                signature_checks = verification.signature_checks;
                verification.outcome.map_err(Rejection::from).and_then(|_| {
                    Err(Rejection {
                        line: Some(line),
                        message: format!(
                            "line {line}: failed to parse a line of the log: invalid UTF-8"
                        ),
                    })
                })
            }
            Ok(text) => {
                let verification = verify_log(&text, gpg);
                signature_checks = verification.signature_checks;
                verification.outcome.map_err(Rejection::from)
            }
        },
    };
    Verdict {
        path: path.display().to_string(),
        outcome,
        signature_checks,
    }
}

fn key_hex(key: &SessionKeyInfo) -> String {
    base16ct::lower::encode_string(&key.key.0)
}

fn key_line(key: &SessionKeyInfo) -> String {
    let whose = if key.from_user { "user" } else { "developer" };
    let gpg = key
        .gpg_signer
        .as_ref()
        .map_or(String::new(), |signer| format!(", GnuPG: {signer}"));
    let decision = match (&key.accepted_at[..], &key.rejected_at[..]) {
        (_, _) if key.from_user => String::new(),
        ([], []) => "; no decision in the log".to_owned(),
        (accepted, []) => format!("; accepted by the user at line {}", join(accepted)),
        ([], rejected) => format!("; rejected by the user at line {}", join(rejected)),
        (accepted, rejected) => format!(
            "; accepted at line {}, rejected at line {}",
            join(accepted),
            join(rejected)
        ),
    };
    format!(
        "{whose} key {} (line {}{gpg}){decision}",
        key_hex(key),
        key.line
    )
}

/// `1 line`, `2 lines`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn join(lines: &[usize]) -> String {
    lines
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `3 activities (first at line 22)`.
fn activities(lines: &Lines) -> String {
    let first = lines
        .first
        .map_or(String::new(), |line| format!(" (first at line {line})"));
    format!("{}{first}", count(lines.count, "activity", "activities"))
}

/// What protocol 1 cannot prove about a log that verifies: the limits that hold for every log,
/// then what this log shows of them.
fn warnings(report: &Report) -> Vec<String> {
    let mut warnings = vec![
        "the log may be truncated: protocol 1 has no signed end record".to_owned(),
        "control messages (session keys, consent, rejections, chat) are signed but not chained: \
         they could have been removed or reordered"
            .to_owned(),
        "the times of day in the log are not signed: only the time between activities is"
            .to_owned(),
    ];
    let user = report.keys.iter().find(|k| k.from_user);
    if user.is_some() {
        warnings.push(
            "the user's session key is signed only by itself: the log cannot prove who the user was"
                .to_owned(),
        );
    }
    for key in &report.keys {
        let whose = if key.from_user { "user" } else { "developer" };
        if key.from_user && user.is_some_and(|first| first.key != key.key) {
            warnings.push(format!(
                "user key {} (line {}) is a second user key: a user key is signed only by \
                 itself, so anyone can add one to a log; it signed {}",
                key_hex(key),
                key.line,
                activities(&key.signed)
            ));
        }
        if !key.from_user && key.accepted_at.is_empty() {
            warnings.push(format!(
                "developer key {} was never accepted in this log",
                key_hex(key)
            ));
        }
        if key.signed_unaccepted.count > 0 {
            warnings.push(format!(
                "developer key {} signed {} while the user had not accepted it",
                key_hex(key),
                activities(&key.signed_unaccepted)
            ));
        }
        if key.signed_for_other_side.count > 0 {
            let other = if key.from_user { "developer" } else { "user" };
            warnings.push(format!(
                "{whose} key {} signed {} that the log gives as the {other}'s",
                key_hex(key),
                activities(&key.signed_for_other_side)
            ));
        }
    }
    let decisions = &report.decisions_not_by_user;
    if let Some(first) = decisions.first {
        warnings.push(format!(
            "the user's decisions (consent, rejections) on {} (first at line {first}) are \
             signed by a key other than the user's first session key",
            count(decisions.count, "line", "lines")
        ));
    }
    if report.rewritten.count > 0 {
        warnings.push(format!(
            "{} in the log hold pointers or a loggedHash that no signature covers and that \
             are not those the line was signed with: the log was changed after it was written",
            activities(&report.rewritten)
        ));
    }
    warnings
}

impl Verdict {
    /// Human-readable lines: the verdict on stdout's first line, then details.
    pub fn text(&self) -> String {
        match &self.outcome {
            Ok(report) => {
                let mut text = format!(
                    "{}: verified: {}, {}, {}; all signatures and hashes are valid\n",
                    self.path,
                    count(report.lines, "line", "lines"),
                    count(report.activities, "activity", "activities"),
                    count(report.controls, "control message", "control messages"),
                );
                for key in &report.keys {
                    text.push_str(&format!("  {}\n", key_line(key)));
                }
                for warning in warnings(report) {
                    text.push_str(&format!("  warning: {warning}\n"));
                }
                text
            }
            Err(rejection) => format!("{}: {}\n", self.path, rejection.message),
        }
    }

    /// The machine-readable report.
    pub fn json(&self) -> Value {
        match &self.outcome {
            Ok(report) => json!({
                "path": self.path,
                "verified": true,
                "lines": report.lines,
                "activities": report.activities,
                "controls": report.controls,
                "signature_checks": report.signature_checks,
                "keys": report.keys.iter().map(|k| json!({
                    "activities_signed": k.signed.count,
                    "line": k.line,
                    "role": if k.from_user { "user" } else { "developer" },
                    "key": key_hex(k),
                    "gpg_signer": k.gpg_signer,
                    "accepted_at": k.accepted_at,
                    "rejected_at": k.rejected_at,
                })).collect::<Vec<_>>(),
                "warnings": warnings(report),
            }),
            Err(rejection) => json!({
                "path": self.path,
                "verified": false,
                "line": rejection.line,
                "error": rejection.message,
                "signature_checks": self.signature_checks,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testlog::NoGpg;
    use kanava_debugme::model::ControlAction;
    use kanava_debugme::recover::Side;
    use kanava_debugme::synthetic::{self, Flavour, typing_session};

    fn verdict(text: &str) -> Verdict {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        verify_path(file.path(), &mut NoGpg)
    }

    #[test]
    fn an_appended_user_key_and_what_it_signed_are_warned_about() {
        let mut log = typing_session(20, Flavour::User);
        let honest = verdict(&log.text()).text();
        assert!(!honest.contains("second user key"), "{honest}");
        let intruder = synthetic::key(9);
        log.session_key(Side::User, &intruder);
        log.seen(&intruder, b"forged\r\n", log.honest_pointers(), 0.1);
        log.control(
            Side::User,
            &intruder,
            ControlAction::SessionKeyAccepted(synthetic::key(2).public()),
        );
        let text = verdict(&log.text()).text();
        assert!(text.contains(": verified: 23 lines"), "{text}");
        let second = format!(
            "warning: user key {} (line 21) is a second user key",
            base16ct::lower::encode_string(&intruder.public().0)
        );
        assert!(text.contains(&second), "{text}");
        assert!(
            text.contains("it signed 1 activity (first at line 22)"),
            "{text}"
        );
        assert!(
            text.contains("decisions (consent, rejections) on 1 line (first at line 23)"),
            "{text}"
        );
    }

    #[test]
    fn invalid_utf8_is_the_verdict_only_when_the_lines_before_it_verify() {
        let log = synthetic::misordered_tail(10).text();
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = log.clone().into_bytes();
        bytes.extend(b"\xff\n");
        std::fs::write(file.path(), &bytes).unwrap();
        let verdict = verify_path(file.path(), &mut NoGpg);
        assert_eq!(verdict.outcome.unwrap_err().line, Some(9));
        let honest = typing_session(10, Flavour::User).text();
        let mut bytes = honest.into_bytes();
        bytes.extend(b"\xff\n");
        std::fs::write(file.path(), &bytes).unwrap();
        let verdict = verify_path(file.path(), &mut NoGpg);
        assert_eq!(
            verdict.outcome.unwrap_err().message,
            "line 11: failed to parse a line of the log: invalid UTF-8"
        );
        assert!(verdict.signature_checks >= 10);
    }

    #[test]
    fn a_rejection_carries_the_work_it_took() {
        let verdict = verdict(&synthetic::misordered_tail(100).text());
        assert_eq!(verdict.outcome.as_ref().unwrap_err().line, Some(99));
        assert_eq!(verdict.json()["signature_checks"], verdict.signature_checks);
        assert!((1..=100).contains(&verdict.signature_checks));
    }
}
