//! What `kanava verify` says about a log: the verdict, what the log holds, and, as warnings,
//! what protocol 1 cannot prove even of a log that verifies.

use std::path::Path;

use kanava_debugme::verify::{GpgCheck, Report, SessionKeyInfo, VerifyError, verify};
use serde_json::{Value, json};

/// The verdict on one log file.
#[derive(Debug)]
pub struct Verdict {
    /// The file, as named on the command line.
    pub path: String,
    /// The report, or why the log was rejected.
    pub outcome: Result<Report, Rejection>,
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
        let line = match &error {
            VerifyError::Parse { line, .. }
            | VerifyError::Signature { line }
            | VerifyError::Chain { line, .. }
            | VerifyError::Gpg { line, .. } => *line,
        };
        Rejection {
            line: Some(line),
            message: error.to_string(),
        }
    }
}

/// Reads and verifies the log at `path`, checking GnuPG-signed keys with `gpg`.
pub fn verify_path(path: &Path, gpg: &mut dyn GpgCheck) -> Verdict {
    let outcome = match std::fs::read(path) {
        Err(error) => Err(Rejection {
            line: None,
            message: format!("cannot read it: {error}"),
        }),
        Ok(bytes) => match String::from_utf8(bytes) {
            Err(error) => {
                let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
                let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
                Err(Rejection {
                    line: Some(line),
                    message: format!(
                        "line {line}: failed to parse a line of the log: invalid UTF-8"
                    ),
                })
            }
            Ok(text) => verify(&text, gpg).map_err(Rejection::from),
        },
    };
    Verdict {
        path: path.display().to_string(),
        outcome,
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

/// The limits of protocol 1 that hold for every log that verifies.
fn warnings(report: &Report) -> Vec<String> {
    let mut warnings = vec![
        "the log may be truncated: protocol 1 has no signed end record".to_owned(),
        "control messages (session keys, consent, rejections, chat) are signed but not chained: \
         they could have been removed or reordered"
            .to_owned(),
    ];
    for key in report.keys.iter().filter(|k| !k.from_user) {
        if key.accepted_at.is_empty() {
            warnings.push(format!(
                "developer key {} was never accepted in this log",
                key_hex(key)
            ));
        }
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
            }),
        }
    }
}
