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

/// Runs gpg with `args` in `home`, feeding `input`; returns (success, stdout, stderr).
fn gpg(home: &Path, args: &[&str], input: &[u8]) -> Result<(bool, Vec<u8>, String), String> {
    let mut child = Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--batch", "--no-tty", "--no-auto-key-retrieve"])
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

impl GpgCheck for SystemGpg {
    fn check(
        &mut self,
        key_hash: &[u8],
        statement: &[u8],
        export: &[u8],
    ) -> Result<String, String> {
        let home = tempfile::Builder::new()
            .prefix("kanava-gpg-")
            .tempdir()
            .map_err(|e| format!("cannot make a temporary keyring: {e}"))?;
        let outcome = (|| {
            let (imported, _, stderr) = gpg(home.path(), &["--import"], export)?;
            if !imported {
                return Err(format!("the key export does not import: {}", stderr.trim()));
            }
            // The signed text goes to stdout, the status lines to stderr.
            let (_, text, status) = gpg(
                home.path(),
                &["--status-fd", "2", "--output", "-", "--verify"],
                statement,
            )?;
            let good = status
                .lines()
                .find_map(|l| l.strip_prefix("[GNUPG:] GOODSIG "))
                .ok_or_else(|| "no good signature".to_owned())?;
            if !status.lines().any(|l| l.starts_with("[GNUPG:] VALIDSIG ")) {
                return Err("the signature is not valid".to_owned());
            }
            if nonempty_lines(&text) != nonempty_lines(key_hash) {
                return Err("the signed statement is not this session key's hash".to_owned());
            }
            // GOODSIG <long key id> <user id>
            Ok(good.split_once(' ').map_or(good, |(_, uid)| uid).to_owned())
        })();
        stop_agent(home.path());
        outcome
    }
}
