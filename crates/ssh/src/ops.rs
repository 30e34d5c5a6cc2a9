//! The operators: keys listed in a file in OpenSSH's `authorized_keys` format (`--ssh-ops`).
//! The file is read at each check, so editing it takes effect without a restart (and a
//! configuration reload may name another: see [`crate::ChatFiles`]).

use std::collections::BTreeSet;
use std::path::PathBuf;

use russh::keys::PublicKey;

use crate::fingerprint;

/// The fingerprints of the keys in an `authorized_keys` text, and the lines that held no key
/// (1-based line number and why). Blank lines and `#` comments are skipped; options before the
/// key type (`from="…" ssh-ed25519 AAAA…`) are allowed and ignored.
pub fn parse_authorized_keys(text: &str) -> (BTreeSet<String>, Vec<(usize, String)>) {
    let mut keys = BTreeSet::new();
    let mut errors = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let start = line
            .match_indices(|c: char| c.is_ascii_whitespace())
            .map(|(i, _)| i + 1)
            .chain([0])
            .filter(|&i| is_key_type_at(line, i))
            .min();
        match start.map(|i| PublicKey::from_openssh(&line[i..])) {
            Some(Ok(key)) => {
                keys.insert(fingerprint(&key));
            }
            Some(Err(error)) => errors.push((number + 1, error.to_string())),
            None => errors.push((number + 1, "no key type found".to_owned())),
        }
    }
    (keys, errors)
}

fn is_key_type_at(line: &str, i: usize) -> bool {
    let word = line[i..]
        .split_ascii_whitespace()
        .next()
        .unwrap_or_default();
    word.starts_with("ssh-") || word.starts_with("ecdsa-sha2-") || word.starts_with("sk-")
}

/// Who the operators are.
#[derive(Debug, Clone, Default)]
pub struct Ops {
    file: Option<PathBuf>,
}

impl Ops {
    /// Operators listed in `file`; nobody without one.
    pub fn new(file: Option<PathBuf>) -> Self {
        Self { file }
    }

    /// Whether the key with this fingerprint is an operator's. An unreadable file makes nobody
    /// an operator, and is logged, as are lines that hold no key.
    pub fn contains(&self, key_fingerprint: &str) -> bool {
        let Some(file) = &self.file else {
            return false;
        };
        match std::fs::read_to_string(file) {
            Ok(text) => {
                let (keys, errors) = parse_authorized_keys(&text);
                for (line, error) in errors {
                    tracing::warn!(file = %file.display(), line, %error, "ops file line skipped");
                }
                keys.contains(key_fingerprint)
            }
            Err(error) => {
                tracing::warn!(file = %file.display(), %error, "cannot read the ops file");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIFdRyOtRxmDofXFCKSCDme3LZ5itth+JxmDrTurEGCQ op@example";

    #[test]
    fn keys_comments_options_and_bad_lines() {
        let key = PublicKey::from_openssh(ED25519).unwrap();
        let text = format!(
            "# ops\n\n{ED25519}\nfrom=\"10.0.0.0/8\",no-pty {ED25519}\nssh-ed25519 AAAAnotbase64\ngarbage\n"
        );
        let (keys, errors) = parse_authorized_keys(&text);
        // As `ssh-keygen -l -E sha256` prints it.
        let expected = "SHA256:F3mOhy9bf0B/djMYoYBc3kb+86ZvGJvn3WSAfSTc/Bs";
        assert_eq!(fingerprint(&key), expected);
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), [expected]);
        assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), [5, 6]);
    }

    #[test]
    fn the_file_is_read_at_each_check() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ops");
        let ops = Ops::new(Some(file.clone()));
        let fp = fingerprint(&PublicKey::from_openssh(ED25519).unwrap());
        assert!(!ops.contains(&fp), "a missing file makes no operator");
        std::fs::write(&file, ED25519).unwrap();
        assert!(ops.contains(&fp));
        assert!(!Ops::default().contains(&fp));
    }
}
