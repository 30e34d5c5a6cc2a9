//! Checks a developer's GnuPG-signed session key with the system's `gpg`, in a temporary
//! keyring that is deleted afterwards: the user's own keyring is never read or written.
//!
//! The statement must be a good clearsigned signature by the exported key, and its text must
//! be the session key's hash (compared line by line, ignoring empty lines, as debug-me does).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use kanava_debugme::verify::GpgCheck;

/// Runs `gpg` for each check, each in a fresh temporary home.
#[derive(Debug, Default)]
pub struct SystemGpg;

/// Runs `gpg` with `args`, feeding `input`: in the throwaway `home` (batch mode, no key
/// retrieval), or, without one, as the user's own gpg (their GNUPGHOME, agent and pinentry).
/// Returns (success, stdout, stderr).
fn gpg(
    home: Option<&Path>,
    args: &[&str],
    input: &[u8],
) -> Result<(bool, Vec<u8>, String), String> {
    let mut command = Command::new("gpg");
    if let Some(home) = home {
        command
            .env("GNUPGHOME", home)
            .args(["--batch", "--no-tty", "--no-auto-key-retrieve"]);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run gpg: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("gpg has no stdin")?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("gpg failed: {e}"))?;
    let _ = writer.join();
    Ok((
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The user's own gpg (see [`gpg`]): stdout and stderr, or stderr as the error.
fn own_gpg(args: &[&str], input: &[u8]) -> Result<(Vec<u8>, String), String> {
    match gpg(None, args, input)? {
        (true, stdout, stderr) => Ok((stdout, stderr)),
        (false, _, stderr) => Err(stderr.trim().to_owned()),
    }
}

/// The primary key's fingerprint in gpg's status lines: VALIDSIG's tenth field, as debug-me
/// takes it.
fn validsig_fingerprint(status: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("[GNUPG:] VALIDSIG "))
        .and_then(|fields| fields.split(' ').nth(9))
        .map(str::to_owned)
}

/// Stops the agent gpg may have started for `home`.
fn stop_agent(home: &Path) {
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", home)
        .args(["--kill", "gpg-agent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn nonempty_lines(text: &[u8]) -> Vec<&[u8]> {
    text.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Who signed a developer's session key, as the user sees it before deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpgIdentity {
    /// The primary key's fingerprint (VALIDSIG's tenth field, as debug-me takes it).
    pub fingerprint: String,
    /// The key's user ids (names and addresses, as the key states them: unverified).
    pub user_ids: Vec<String>,
}

/// Imports `export` into the temporary `home`, verifies the clearsigned `statement` with it,
/// and checks that its text is `key_hash`.
fn check_in(
    home: &Path,
    key_hash: &[u8],
    statement: &[u8],
    export: &[u8],
) -> Result<GpgIdentity, String> {
    let (imported, _, stderr) = gpg(Some(home), &["--import"], export)?;
    if !imported {
        return Err(format!("the key export does not import: {}", stderr.trim()));
    }
    // The signed text goes to stdout, the status lines to stderr.
    let (_, text, status) = gpg(
        Some(home),
        &["--status-fd", "2", "--output", "-", "--verify"],
        statement,
    )?;
    if !status.lines().any(|l| l.starts_with("[GNUPG:] GOODSIG ")) {
        return Err("no good signature".to_owned());
    }
    let fingerprint =
        validsig_fingerprint(&status).ok_or_else(|| "the signature is not valid".to_owned())?;
    if nonempty_lines(&text) != nonempty_lines(key_hash) {
        return Err("the signed statement is not this session key's hash".to_owned());
    }
    let (_, listing, _) = gpg(
        Some(home),
        &[
            "--with-colons",
            "--fixed-list-mode",
            "--list-keys",
            &fingerprint,
        ],
        b"",
    )?;
    let user_ids = String::from_utf8_lossy(&listing)
        .lines()
        .filter(|l| l.starts_with("uid:"))
        .filter_map(|l| l.split(':').nth(9))
        .map(unescape_colons)
        .collect();
    Ok(GpgIdentity {
        fingerprint,
        user_ids,
    })
}

/// Undoes gpg's `\xNN` escapes in a `--with-colons` field.
fn unescape_colons(field: &str) -> String {
    let mut bytes = Vec::with_capacity(field.len());
    let raw = field.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (
            raw[i],
            raw.get(i + 1),
            hex.and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'\\', Some(b'x'), Some(byte)) => {
                bytes.push(byte);
                i += 4;
            }
            (byte, _, _) => {
                bytes.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

impl SystemGpg {
    /// Checks a developer's GnuPG-signed session key (the clearsigned `statement` of `key_hash`
    /// by the key in `export`) and says who signed it.
    pub fn identify(
        &self,
        key_hash: &[u8],
        statement: &[u8],
        export: &[u8],
    ) -> Result<GpgIdentity, String> {
        let home = tempfile::Builder::new()
            .prefix("kanava-gpg-")
            .tempdir()
            .map_err(|e| format!("cannot make a temporary keyring: {e}"))?;
        let outcome = check_in(home.path(), key_hash, statement, export);
        stop_agent(home.path());
        outcome
    }

    /// The keyrings among `*.gpg` in `dir` (debug-me's `/usr/share/debug-me/keyring`) that
    /// hold `fingerprint`, named as debug-me names them: the file name with `_` as spaces and
    /// without `.gpg` ("a Debian Developer").
    pub fn keyrings_holding(&self, dir: &Path, fingerprint: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "gpg"))
            .collect();
        files.sort();
        // gpg wants a home even with --no-default-keyring: a throwaway one, not the user's.
        let Ok(home) = tempfile::Builder::new().prefix("kanava-gpg-").tempdir() else {
            return Vec::new();
        };
        let found = files
            .into_iter()
            .filter(|keyring| {
                let Some(keyring) = keyring.to_str() else {
                    return false;
                };
                let args = [
                    "--no-options",
                    "--no-default-keyring",
                    "--no-auto-check-trustdb",
                    "--keyring",
                    keyring,
                    "--list-keys",
                    fingerprint,
                ];
                gpg(Some(home.path()), &args, b"").is_ok_and(|(listed, _, _)| listed)
            })
            .filter_map(|keyring| {
                let name = keyring.file_stem()?.to_string_lossy().replace('_', " ");
                Some(name)
            })
            .collect();
        stop_agent(home.path());
        found
    }
}

/// A developer's session key bound to their GnuPG identity, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSessionKey {
    /// The clearsigned statement (the session key's hash).
    pub statement: Vec<u8>,
    /// The armoured, minimal export of the signing key.
    pub export: Vec<u8>,
    /// The signing key's primary fingerprint.
    pub fingerprint: String,
}

impl SystemGpg {
    /// Clearsigns `key_hash` (a session key's 128 hex characters) with the developer's own
    /// GnuPG key (`key`, else gpg's default) and exports that key, as debug-me does (spec 9).
    pub fn sign_session_key(
        &self,
        key_hash: &[u8],
        key: Option<&str>,
    ) -> Result<SignedSessionKey, String> {
        let mut args = vec!["--armor", "--output", "-", "--clearsign"];
        if let Some(key) = key {
            args.extend(["--local-user", key]);
        }
        let (statement, _) =
            own_gpg(&args, key_hash).map_err(|e| format!("gpg sign failed: {e}"))?;
        let (_, status) = own_gpg(
            &["--status-fd", "2", "--output", "/dev/null", "--verify"],
            &statement,
        )
        .map_err(|e| format!("gpg cannot verify its own signature: {e}"))?;
        let fingerprint =
            validsig_fingerprint(&status).ok_or("gpg gave no fingerprint for the signature")?;
        let (export, _) = own_gpg(
            &[
                "--armor",
                "--export-options",
                "no-export-attributes,export-minimal",
                "--export",
                &fingerprint,
            ],
            b"",
        )
        .map_err(|e| format!("gpg cannot export the key: {e}"))?;
        Ok(SignedSessionKey {
            statement,
            export,
            fingerprint,
        })
    }
}

impl GpgCheck for SystemGpg {
    fn check(
        &mut self,
        key_hash: &[u8],
        statement: &[u8],
        export: &[u8],
    ) -> Result<String, String> {
        let identity = self.identify(key_hash, statement, export)?;
        Ok(identity
            .user_ids
            .first()
            .cloned()
            .unwrap_or(identity.fingerprint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway home with a new key; its fingerprint.
    fn home_with_key(name: &str) -> (tempfile::TempDir, String) {
        let home = tempfile::tempdir().unwrap();
        let uid = format!("{name} <{name}@example.org>");
        let args = [
            "--passphrase",
            "",
            "--quick-gen-key",
            &uid,
            "ed25519",
            "sign",
            "never",
        ];
        let (made, _, stderr) = gpg(Some(home.path()), &args, b"").expect("gpg is installed");
        assert!(made, "{stderr}");
        let (_, status, _) =
            gpg(Some(home.path()), &["--with-colons", "--list-keys"], b"").unwrap();
        let fingerprint = String::from_utf8_lossy(&status)
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').nth(8))
            .unwrap()
            .to_owned();
        (home, fingerprint)
    }

    #[test]
    fn a_key_is_vouched_for_by_the_keyrings_that_hold_it_named_as_debug_me_names_them() {
        let (home, fingerprint) = home_with_key("dev");
        let (other_home, other) = home_with_key("other");
        let keyrings = tempfile::tempdir().unwrap();
        for (home, file) in [
            (&home, "a_debug-me_developer.gpg"),
            (&other_home, "a_Debian_Developer.gpg"),
        ] {
            let (exported, export, _) = gpg(Some(home.path()), &["--export"], b"").unwrap();
            assert!(exported);
            std::fs::write(keyrings.path().join(file), export).unwrap();
        }
        let gpg = SystemGpg;
        assert_eq!(
            gpg.keyrings_holding(keyrings.path(), &fingerprint),
            ["a debug-me developer"]
        );
        assert_eq!(
            gpg.keyrings_holding(keyrings.path(), &other),
            ["a Debian Developer"]
        );
        assert!(
            gpg.keyrings_holding(Path::new("/nonexistent"), &other)
                .is_empty()
        );
        stop_agent(home.path());
        stop_agent(other_home.path());
    }
}
