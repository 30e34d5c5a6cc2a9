//! One truth, two implementations (issue 14, item 5): the browser's verifier
//! (web/debug-me/verifier, run here by node through its CLI) and `kanava verify --json` give
//! the same verdict, failing line, error text, warnings, keys and GnuPG signers on every log
//! the project has: the committed real logs, the fuzz seeds, the synthetic logs the Rust tests
//! make (the 3,021-line broken kinds too), tampered and restyled copies of each, seeded random
//! mutations, real debug-me logs of every flavour (user, developer, watcher, server, download)
//! with a GnuPG-signed developer key, and GnuPG-signed keys good and bad. Each tool runs once
//! over all the files. The two wire decoders accept and refuse the same frames.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kanava_debugme::model::ControlAction;
use kanava_debugme::recover::Side;
use kanava_debugme::synthetic::{
    self, Flavour, many_keys, misordered_tail, skipping_chain, typing_session,
};
use serde_json::Value;

use crate::debugme::{Mutator, tampered};
use crate::debugme_server::{debug_me, real_session};
use crate::support::*;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One JSON verdict per line of `stdout`.
fn verdicts(tool: &str, stdout: &[u8], stderr: &[u8], files: usize) -> Vec<Value> {
    let verdicts: Vec<Value> = stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("{tool}: {e}: {}", String::from_utf8_lossy(l)))
        })
        .collect();
    assert_eq!(
        verdicts.len(),
        files,
        "{tool} gave {} verdicts for {files} files: {}",
        verdicts.len(),
        String::from_utf8_lossy(stderr)
    );
    verdicts
}

/// `kanava verify --json` over `files`, in one run.
fn kanava_verdicts(files: &[PathBuf]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_kanava"))
        .args(["verify", "--json"])
        .args(files)
        .output()
        .unwrap();
    verdicts("kanava verify", &out.stdout, &out.stderr, files.len())
}

/// The browser verifier's CLI over `files`, in one run; and how long it took.
fn browser_verdicts(files: &[PathBuf]) -> (Vec<Value>, Duration) {
    let started = Instant::now();
    let out = Command::new("node")
        .arg(root().join("web/debug-me/verifier/cli.mjs"))
        .args(files)
        .output()
        .expect("node is installed (apt-get install nodejs)");
    let took = started.elapsed();
    (
        verdicts("node cli.mjs", &out.stdout, &out.stderr, files.len()),
        took,
    )
}

/// A verdict as compared: a failed GnuPG check is compared up to its reason, which is gpg's
/// own words on one side and openpgp.js's on the other.
fn comparable(mut verdict: Value) -> Value {
    if let Some(error) = verdict["error"].as_str() {
        const GPG: &str = ": bad GnuPG signature: ";
        if let Some(at) = error.find(GPG) {
            verdict["error"] = Value::from(&error[..at + GPG.len() - 1]);
        }
    }
    verdict
}

/// Runs both verifiers over `files` and returns each disagreement, naming the file.
fn disagreements(files: &[PathBuf]) -> (Vec<String>, Vec<Value>) {
    let rust = kanava_verdicts(files);
    let (browser, _) = browser_verdicts(files);
    let mut found = Vec::new();
    for ((file, ours), theirs) in files.iter().zip(&rust).zip(browser) {
        if comparable(ours.clone()) != comparable(theirs.clone()) {
            found.push(format!(
                "{}:\n  kanava verify: {ours}\n  browser:       {theirs}",
                file.display()
            ));
        }
    }
    (found, rust)
}

fn assert_agree(files: &[PathBuf]) -> Vec<Value> {
    let (found, rust) = disagreements(files);
    assert!(
        found.is_empty(),
        "{} of {} logs get different verdicts:\n{}",
        found.len(),
        files.len(),
        found.join("\n")
    );
    rust
}

/// Writes `bytes` as `dir/name`; returns the path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The files of `dir` (a committed corpus directory), if it exists.
fn files_in(dir: &Path, ext: Option<&str>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && ext.is_none_or(|ext| p.extension().is_some_and(|e| e == ext)))
        .collect();
    files.sort();
    files
}

/// The synthetic logs the Rust test suite makes, by name.
fn synthetic_logs() -> Vec<(String, String)> {
    let mut appended = typing_session(20, Flavour::User);
    let intruder = synthetic::key(9);
    appended.session_key(Side::User, &intruder);
    appended.seen(&intruder, b"rm -rf ~\r\n", appended.honest_pointers(), 0.1);
    appended.control(
        Side::User,
        &intruder,
        ControlAction::SessionKeyAccepted(synthetic::key(2).public()),
    );
    // Keys that sign for the other side, and a developer typing before it was accepted.
    let mut crossed = typing_session(12, Flavour::User);
    let (user, developer) = (synthetic::key(1), synthetic::key(2));
    crossed.seen(
        &developer,
        b"not the user's\r\n",
        crossed.honest_pointers(),
        0.2,
    );
    crossed.entered(
        &user,
        b"not a developer's\r",
        crossed.honest_pointers(),
        0.2,
    );
    let late = synthetic::key(5);
    crossed.session_key(Side::Developer, &late);
    crossed.entered(&late, b"too soon\r", crossed.honest_pointers(), 0.2);
    crossed.control(
        Side::User,
        &user,
        ControlAction::SessionKeyRejected(late.public()),
    );
    // More session keys than a line may try, then a chat nobody introduced signed.
    let mut crowded = synthetic::SyntheticLog::new(Flavour::User);
    crowded.session_key(Side::User, &user);
    for n in 0..300u16 {
        let mut secret = [9; 32];
        secret[..2].copy_from_slice(&n.to_le_bytes());
        crowded.session_key(
            Side::Developer,
            &kanava_debugme::sign::SessionKey::from_secret(secret),
        );
    }
    crowded.control(
        Side::User,
        &synthetic::key(6),
        ControlAction::ChatMessage(b"x".to_vec(), b"y".to_vec()),
    );
    vec![
        ("crossed-sides", crossed.text()),
        ("more-keys-than-a-line-may-try", crowded.text()),
        ("odd-times-user", odd_times(Flavour::User)),
        ("odd-times-server", odd_times(Flavour::Server)),
        ("typing-user", typing_session(16, Flavour::User).text()),
        ("typing-server", typing_session(16, Flavour::Server).text()),
        ("skipping-40", skipping_chain(40, Flavour::Server).text()),
        ("skipping-user-40", skipping_chain(40, Flavour::User).text()),
        ("misordered-40", misordered_tail(40).text()),
        ("many-keys-40", many_keys(40).text()),
        ("appended-user-key", appended.text()),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_owned(), text))
    .collect()
}

/// A session whose elapsed times are doubles whose Haskell `show` (hashed) and JSON form
/// (written by serde_json, read back by each verifier) are each a corner of their own.
fn odd_times(flavour: Flavour) -> String {
    let user = synthetic::key(1);
    let mut log = synthetic::SyntheticLog::new(flavour);
    log.session_key(Side::User, &user);
    let times = [
        0.0,
        -0.0,
        1e-7,
        0.1 + 0.2,
        5e-324,
        f64::MAX,
        1e7,
        9_999_999.5,
        12_345_678.9,
        1e21,
        1e22,
        123_456.789,
        0.05,
        1.0 / 3.0,
        2.0_f64.powi(53),
        7.0,
        -1.5,
    ];
    for (n, time) in times.into_iter().enumerate() {
        log.seen(
            &user,
            format!("{n}\r\n").as_bytes(),
            log.honest_pointers(),
            time,
        );
    }
    log.text()
}

/// Copies of a log whose lines say the same or nearly the same in another JSON form: what the
/// two decoders must read alike (hash methods, base64 for hex, whitespace, the spelling of a
/// number, absent optional keys, unknown keys, loggedHash null, a bare `\r` at the end).
fn restyled(log: &str) -> Vec<(&'static str, String)> {
    type Restyle = fn(&str) -> String;
    let styles: [(&str, Restyle); 8] = [
        ("sha3", |l| l.replacen("\"SHA512\"", "\"SHA3\"", 1)),
        ("pointer-base64", |l| {
            let key = "\"hashValue\":{\"v\":\"";
            let Some(at) = l.find(key) else {
                return l.to_owned();
            };
            let start = at + key.len();
            let end = start + l[start..].find('"').unwrap();
            let b64 = base64(&l.as_bytes()[start..end]);
            format!("{}\"hashValue\":{{\"b64\":\"{b64}{}", &l[..at], &l[end..])
        }),
        ("whitespace", |l| l.replace(':', ": ").replace(',', " ,\t")),
        ("number-spelling", |l| {
            let key = "\"elapsedTime\":";
            let Some(at) = l.find(key) else {
                return l.to_owned();
            };
            let start = at + key.len();
            let end = start
                + l[start..]
                    .find(|c: char| !matches!(c, '0'..='9' | '.' | 'e' | 'E' | '-' | '+'))
                    .unwrap_or(l.len() - start);
            let number = &l[start..end];
            let respelled = match (number.contains('.'), number.contains(['e', 'E'])) {
                (_, true) => number
                    .replacen(['e', 'E'], "00E", 1)
                    .replacen(".00E", ".0E", 1),
                (true, false) => format!("{number}000e0"),
                (false, false) => format!("{number}.0E+0"),
            };
            format!("{}{respelled}{}", &l[..start], &l[end..])
        }),
        ("no-prev-entered", |l| {
            l.replace("\"prevEntered\":null,", "")
        }),
        ("unknown-key", |l| {
            l.replacen(
                "{\"loggedMessage\"",
                "{\"extra\":[1,{\"x\":null}],\"loggedMessage\"",
                1,
            )
        }),
        ("logged-hash-null", |l| match l.find("\"loggedHash\":{") {
            Some(at) => format!("{}\"loggedHash\":null}}", &l[..at]),
            None => l.to_owned(),
        }),
        ("unicode-escapes", |l| {
            l.replace("\"v\":\"1\"", "\"v\":\"\\u0031\"")
        }),
    ];
    let lines: Vec<&str> = log.lines().collect();
    let mut copies: Vec<(&'static str, String)> = styles
        .iter()
        .map(|(name, style)| {
            let text = lines.iter().map(|l| format!("{}\n", style(l))).collect();
            (*name, text)
        })
        .collect();
    copies.push(("bare-cr-at-the-end", format!("{}\r", log.trim_end())));
    copies
}

/// Standard padded base64.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Every log the project has, its tampered copies and seeded mutations, written into `dir`.
fn corpus(dir: &Path) -> Vec<PathBuf> {
    let mut originals: Vec<(String, Vec<u8>)> = Vec::new();
    for (from, ext) in [
        ("crates/debugme/testdata", Some("log")),
        ("crates/debugme-tools/testdata", Some("log")),
        ("fuzz/seeds/debugme_verify", None),
        ("fuzz/seeds/debugme_log", None),
    ] {
        for path in files_in(&root().join(from), ext) {
            let name = format!(
                "{}-{}",
                from.replace('/', "_"),
                path.file_name().unwrap().to_string_lossy()
            );
            originals.push((name, std::fs::read(&path).unwrap()));
        }
    }
    originals.extend(
        synthetic_logs()
            .into_iter()
            .map(|(name, text)| (name, text.into_bytes())),
    );
    let mut files = Vec::new();
    let mut mutator = Mutator(0x2545_f491_4f6c_dd1d);
    for (name, bytes) in &originals {
        files.push(write(dir, &format!("{name}.log"), bytes));
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue;
        };
        let lines = text.lines().count();
        // tampered() needs a last line with data and a signature.
        let last = text.lines().last().unwrap_or("");
        let tamperable = (last.contains("Data\":{\"v\":\"")
            || last.contains("ChatMessage\":[{\"v\":\""))
            && last.contains("Ed25519Signature\":{\"b64\":\"");
        if tamperable {
            for (how, copy) in tampered(text) {
                files.push(write(dir, &format!("{name}-{how}.log"), &copy));
            }
        }
        for (how, copy) in restyled(text) {
            files.push(write(dir, &format!("{name}-{how}.log"), copy.as_bytes()));
        }
        if lines > 0 {
            for run in 0..12 {
                let copy = mutator.mutate(text);
                files.push(write(
                    dir,
                    &format!("{name}-mutated-{run}.log"),
                    copy.as_bytes(),
                ));
            }
        }
    }
    files
}

#[test]
fn both_verifiers_agree_on_every_log_the_project_has_and_their_tampered_and_mutated_copies() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = corpus(dir.path());
    assert!(files.len() >= 300, "only {} logs", files.len());
    // Paths that cannot be read: the same refusal.
    let directory = dir.path().join("a-directory");
    std::fs::create_dir(&directory).unwrap();
    files.extend([dir.path().join("missing.log"), directory]);
    let rust = assert_agree(&files);
    // Unusual elapsed times hash alike on both sides: those logs verify.
    for name in ["odd-times-user.log", "odd-times-server.log"] {
        let at = files.iter().position(|f| f.ends_with(name)).unwrap();
        assert_eq!(rust[at]["verified"], true, "{name}: {}", rust[at]);
    }
    // Another JSON form of the same lines reads alike: those copies of an honest log verify.
    for how in [
        "pointer-base64",
        "whitespace",
        "number-spelling",
        "no-prev-entered",
        "unknown-key",
        "logged-hash-null",
        "unicode-escapes",
    ] {
        for log in ["typing-user", "typing-server"] {
            let name = format!("{log}-{how}.log");
            let at = files.iter().position(|f| f.ends_with(&name)).unwrap();
            assert_eq!(rust[at]["verified"], true, "{name}: {}", rust[at]);
        }
    }
    // The corpus is not one-sided: both verdicts, and failures of several kinds, are in it.
    let verified = rust.iter().filter(|v| v["verified"] == true).count();
    assert!(
        verified >= 20 && files.len() - verified >= 100,
        "{verified} of {} verified",
        files.len()
    );
    let kinds = [
        "cannot verify the signature within 256 candidates: none of the session keys tried",
        "signed 1 activity (first at line 14) that the log gives as the developer's",
        "while the user had not accepted it",
        "failed to verify message signature",
        "invalid hash chain",
        "failed to parse a line of the log: not JSON",
        "failed to parse a line of the log: invalid UTF-8",
    ];
    for kind in kinds {
        assert!(
            rust.iter()
                .any(|v| v["error"].as_str().is_some_and(|e| e.contains(kind))
                    || v["warnings"].as_array().is_some_and(|w| {
                        w.iter()
                            .any(|w| w.as_str().is_some_and(|w| w.contains(kind)))
                    })),
            "no log failed or was warned about with {kind}"
        );
    }
}

#[test]
fn the_long_broken_and_crafted_logs_get_the_same_verdict_quickly_in_node_too() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("misordered-3021", misordered_tail(3_021).text()),
        (
            "skipping-3021",
            skipping_chain(3_021, Flavour::Server).text(),
        ),
        ("many-keys-3021", many_keys(3_021).text()),
        ("typing-3021", typing_session(3_021, Flavour::Server).text()),
    ]
    .map(|(name, text)| write(dir.path(), &format!("{name}.log"), text.as_bytes()));
    let rust = assert_agree(&files);
    assert_eq!(
        rust[0]["error"],
        "line 3020: invalid hash chain: it points to line 3021, which comes after it"
    );
    assert_eq!(rust[3]["verified"], true);
    // Each alone, timed: the verdict on 3,021 lines comes in seconds, not minutes.
    for file in &files {
        let (_, took) = browser_verdicts(std::slice::from_ref(file));
        eprintln!("{}: {took:?} in node", file.display());
        assert!(
            took < Duration::from_secs(15),
            "{}: {took:?} in node",
            file.display()
        );
    }
}

#[tokio::test]
async fn real_debug_me_logs_of_every_flavour_with_a_gnupg_signed_developer_agree() {
    let _heavy = heavy().await;
    let server = Kanava::start();
    let scratch = tempfile::tempdir().unwrap();
    let (roles, id, server_log) = real_session(&server, scratch.path(), "hello-from-dev", 7).await;
    let download_dir = scratch.path().join("download");
    std::fs::create_dir(&download_dir).unwrap();
    let gnupg = roles.gnupg("verify");
    let session_url = format!("http://{}/{id}", server.debug_me);
    let download = debug_me(&["--download", &session_url], &download_dir, &gnupg);
    assert!(download.status.success(), "{download:?}");

    let logs = [
        ("server", server_log),
        ("user", roles.log("user", false, &id)),
        ("developer", roles.log("dev", true, &id)),
        ("watcher", roles.log("watch", true, &id)),
        ("download", download_dir.join(format!("debug-me.{id}.log"))),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut mutator = Mutator(0x5851_f42d_4c95_7f2d);
    for (flavour, log) in &logs {
        let text = std::fs::read_to_string(log)
            .unwrap_or_else(|e| panic!("{flavour} log {}: {e}", log.display()));
        files.push(write(
            dir.path(),
            &format!("{flavour}.log"),
            text.as_bytes(),
        ));
        for (how, copy) in tampered(&text) {
            files.push(write(dir.path(), &format!("{flavour}-{how}.log"), &copy));
        }
        for run in 0..8 {
            let copy = mutator.mutate(&text);
            files.push(write(
                dir.path(),
                &format!("{flavour}-mutated-{run}.log"),
                copy.as_bytes(),
            ));
        }
    }
    let rust = assert_agree(&files);
    // The server's log verifies, with the developer's key signed by GnuPG on both sides.
    assert_eq!(rust[0]["verified"], true, "{}", rust[0]);
    assert_eq!(rust[0]["keys"][1]["gpg_signer"], "Dev <dev@example.org>");
}

/// Runs gpg in the GnuPG home `home` with `input`; returns its stdout.
fn gpg_in(home: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gpg")
        .env("GNUPGHOME", home)
        .args([
            "--batch",
            "-q",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gpg is installed");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A session where the user accepts a developer whose session key is GnuPG-signed with
/// `statement` and `export`, and the developer types.
fn gpg_session(statement: &[u8], export: &[u8]) -> String {
    let user = synthetic::key(1);
    let developer = synthetic::key(2);
    let mut log = synthetic::SyntheticLog::new(Flavour::User);
    log.session_key(Side::User, &user);
    log.seen(&user, b"$ ", log.honest_pointers(), 0.0);
    log.control(
        Side::Developer,
        &developer,
        ControlAction::SessionKey(
            kanava_debugme::model::PerhapsSigned::GpgSigned(
                developer.public(),
                statement.to_vec(),
                export.to_vec(),
            ),
            b"1".to_vec(),
        ),
    );
    log.control(
        Side::User,
        &user,
        ControlAction::SessionKeyAccepted(developer.public()),
    );
    log.entered(&developer, b"ls\r", log.honest_pointers(), 0.5);
    log.seen(&user, b"ls\r\n", log.honest_pointers(), 0.1);
    log.text()
}

#[test]
fn gnupg_signed_developer_keys_are_judged_alike_by_gpg_and_openpgp_js() {
    let dir = tempfile::tempdir().unwrap();
    let dev = private_dir(&dir.path().join("gnupg-dev"));
    let other = private_dir(&dir.path().join("gnupg-other"));
    let dev_fingerprint = new_gpg_key(&dev, "Dev");
    // A second user id, made the primary one: gpg and openpgp.js must name the same one.
    gpg_in(
        &dev,
        &[
            "--quick-add-uid",
            &dev_fingerprint,
            "Second <second@example.org>",
        ],
        b"",
    );
    gpg_in(
        &dev,
        &[
            "--quick-set-primary-uid",
            &dev_fingerprint,
            "Second <second@example.org>",
        ],
        b"",
    );
    let other_fingerprint = new_gpg_key(&other, "Other");
    // Keys with a second user id not made primary, signed 100 s after the first (gpg names the
    // newer) or in the same second (gpg names the longer, then the greater bytes).
    let made_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1_000;
    let key_with_uids = |name: &str, first: &str, second: &str, after: u64| {
        let home = private_dir(&dir.path().join(format!("gnupg-{name}")));
        let at = |t: u64| format!("{t}!");
        gpg_in(
            &home,
            &[
                "--faked-system-time",
                &at(made_at),
                "--quick-gen-key",
                first,
                "ed25519",
                "sign",
                "never",
            ],
            b"",
        );
        let listing =
            String::from_utf8(gpg_in(&home, &["--with-colons", "--list-keys"], b"")).unwrap();
        let fingerprint = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').nth(8))
            .unwrap()
            .to_owned();
        gpg_in(
            &home,
            &[
                "--faked-system-time",
                &at(made_at + after),
                "--quick-add-uid",
                &fingerprint,
                second,
            ],
            b"",
        );
        (home, fingerprint)
    };
    let (later, later_fingerprint) = key_with_uids(
        "later",
        "Later <later@example.org>",
        "Added <added@example.org>",
        100,
    );
    let (tie, tie_fingerprint) =
        key_with_uids("tie", "Tie <tie@example.org>", "Aaa <a@example.org>", 0);
    let key_hash = kanava_debugme::hash::public_key(&synthetic::key(2).public());
    let wrong_hash = kanava_debugme::hash::public_key(&synthetic::key(3).public());
    let export = |home: &Path, fingerprint: &str| {
        gpg_in(
            home,
            &[
                "--armor",
                "--export-options",
                "export-minimal",
                "--export",
                fingerprint,
            ],
            b"",
        )
    };
    let clearsign = |home: &Path, text: &[u8]| gpg_in(home, &["--armor", "--clearsign"], text);
    let dev_export = export(&dev, &dev_fingerprint);
    let other_export = export(&other, &other_fingerprint);
    let good = clearsign(&dev, &key_hash);
    let mut altered = good.clone();
    let at = altered
        .windows(key_hash.len())
        .position(|w| w == key_hash.as_slice())
        .unwrap();
    altered[at] = if altered[at] == b'0' { b'1' } else { b'0' };
    let cases: [(&str, Vec<u8>, Vec<u8>); 9] = [
        ("good", good.clone(), dev_export.clone()),
        (
            "good-uid-added-later",
            clearsign(&later, &key_hash),
            export(&later, &later_fingerprint),
        ),
        (
            "good-uids-made-in-one-second",
            clearsign(&tie, &key_hash),
            export(&tie, &tie_fingerprint),
        ),
        (
            "statement-of-another-key",
            clearsign(&dev, &wrong_hash),
            dev_export.clone(),
        ),
        (
            "signed-by-another-key",
            clearsign(&other, &key_hash),
            dev_export.clone(),
        ),
        ("export-of-another-key", good.clone(), other_export.clone()),
        ("altered-statement", altered, dev_export.clone()),
        ("garbage-export", good.clone(), b"not a key".to_vec()),
        ("unsigned-statement", key_hash.clone(), dev_export.clone()),
    ];
    let files: Vec<PathBuf> = cases
        .iter()
        .map(|(name, statement, export)| {
            write(
                dir.path(),
                &format!("{name}.log"),
                gpg_session(statement, export).as_bytes(),
            )
        })
        .collect();
    let rust = assert_agree(&files);
    let signers: Vec<&str> = rust[..3]
        .iter()
        .map(|verdict| {
            assert_eq!(verdict["verified"], true, "{verdict}");
            verdict["keys"][1]["gpg_signer"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        signers,
        [
            "Second <second@example.org>",
            "Added <added@example.org>",
            "Tie <tie@example.org>"
        ]
    );
    for (verdict, (name, _, _)) in rust.iter().zip(&cases).skip(3) {
        assert_eq!(verdict["line"], 3, "{name}: {verdict}");
        assert!(
            verdict["error"]
                .as_str()
                .unwrap()
                .starts_with("line 3: bad GnuPG signature: "),
            "{name}: {verdict}"
        );
    }
    for home in [&dev, &other, &later, &tie] {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", home)
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// The browser's wire decoder on each file: `{"ok": hex of the message encoded again}` or
/// `{"error": text}`, one per line.
const WIRE_SCRIPT: &str = r#"
import { readFileSync } from 'node:fs';
const { decodeMessage, encodeMessage, hex } = await import(process.argv[1]);
for (const path of process.argv.slice(2)) {
  try {
    const message = decodeMessage(new Uint8Array(readFileSync(path)));
    console.log(JSON.stringify({ ok: hex(encodeMessage(message)) }));
  } catch (error) {
    console.log(JSON.stringify({ error: error.message }));
  }
}
"#;

#[test]
fn both_wire_decoders_accept_and_refuse_the_same_frames() {
    use kanava_debugme::wire::{WireError, decode_message, encode_message};
    let dir = tempfile::tempdir().unwrap();
    let seeds: Vec<Vec<u8>> = files_in(&root().join("fuzz/seeds/debugme_wire"), None)
        .into_iter()
        .map(|path| std::fs::read(path).unwrap())
        .filter(|bytes| bytes.first() == Some(&b'L'))
        .map(|bytes| bytes[1..].to_vec())
        .collect();
    assert!(seeds.len() >= 10);
    // xorshift64: byte flips, cuts, repeated and inserted bytes, fields appended twice.
    let mut state = 0x6a09_e667_f3bc_c908_u64;
    let mut below = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut inputs = seeds.clone();
    for _ in 0..1500 {
        let mut bytes = seeds[below(seeds.len())].clone();
        for _ in 0..1 + below(3) {
            let at = below(bytes.len() + 1);
            match below(5) {
                0 if at < bytes.len() => bytes[at] ^= 1 << below(8),
                1 => bytes.truncate(at),
                2 => bytes.insert(at, [0x00, 0x08, 0x0a, 0x12, 0x7f, 0x80, 0xff][below(7)]),
                3 => {
                    let copy = bytes[at..].to_vec();
                    bytes.extend(copy);
                }
                _ if at < bytes.len() => bytes[at] = bytes[at].wrapping_add(1),
                _ => {}
            }
        }
        inputs.push(bytes);
    }
    let files: Vec<PathBuf> = inputs
        .iter()
        .enumerate()
        .map(|(n, bytes)| write(dir.path(), &format!("frame-{n}"), bytes))
        .collect();
    let out = Command::new("node")
        .args(["--input-type=module", "-e", WIRE_SCRIPT])
        .arg(root().join("web/debug-me/verifier/index.js"))
        .args(&files)
        .output()
        .expect("node is installed (apt-get install nodejs)");
    let browser = verdicts("node wire decoder", &out.stdout, &out.stderr, files.len());
    let mut found = Vec::new();
    let mut accepted = 0;
    for ((bytes, file), theirs) in inputs.iter().zip(&files).zip(&browser) {
        let ours = match decode_message(bytes) {
            Ok(message) => {
                accepted += 1;
                serde_json::json!({ "ok": base16ct::lower::encode_string(&encode_message(&message)) })
            }
            // prost's own errors are compared by kind only: both refuse.
            Err(WireError::Decode(_)) => serde_json::json!({ "error": "protobuf decode error" }),
            Err(error) => serde_json::json!({ "error": error.to_string() }),
        };
        let theirs = match theirs["error"].as_str() {
            Some(error) if error.starts_with("protobuf decode error") => {
                serde_json::json!({ "error": "protobuf decode error" })
            }
            _ => theirs.clone(),
        };
        if ours != theirs {
            found.push(format!(
                "{} ({}):\n  wire.rs: {ours}\n  wire.js: {theirs}",
                file.display(),
                base16ct::lower::encode_string(bytes)
            ));
        }
    }
    assert!(
        found.is_empty(),
        "{} of {} frames decode differently:\n{}",
        found.len(),
        files.len(),
        found.join("\n")
    );
    assert!(
        (100..files.len() - 100).contains(&accepted),
        "{accepted} of {} accepted",
        files.len()
    );
}

#[test]
fn both_verifiers_check_at_most_64_gnupg_signed_keys_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let home = private_dir(&dir.path().join("gnupg"));
    new_gpg_key(&home, "Many");
    let fingerprint = String::from_utf8(gpg_in(&home, &["--with-colons", "--list-keys"], b""))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("fpr:").map(str::to_owned))
        .and_then(|l| l.split(':').nth(8).map(str::to_owned))
        .unwrap();
    let export = gpg_in(
        &home,
        &[
            "--armor",
            "--export-options",
            "export-minimal",
            "--export",
            &fingerprint,
        ],
        b"",
    );
    let user = synthetic::key(1);
    let mut log = synthetic::SyntheticLog::new(Flavour::User);
    log.session_key(Side::User, &user);
    for n in 0..=kanava_debugme::verify::MAX_GPG_KEYS as u16 {
        let mut secret = [11; 32];
        secret[..2].copy_from_slice(&n.to_le_bytes());
        let key = kanava_debugme::sign::SessionKey::from_secret(secret);
        let statement = gpg_in(
            &home,
            &["--armor", "--clearsign"],
            &kanava_debugme::hash::public_key(&key.public()),
        );
        log.control(
            Side::Developer,
            &key,
            ControlAction::SessionKey(
                kanava_debugme::model::PerhapsSigned::GpgSigned(
                    key.public(),
                    statement,
                    export.clone(),
                ),
                b"1".to_vec(),
            ),
        );
    }
    let file = write(dir.path(), "many-gpg-keys.log", log.text().as_bytes());
    let rust = assert_agree(&[file]);
    assert_eq!(
        rust[0]["error"],
        "line 66: more than 64 GnuPG-signed session keys; each runs gpg, and kanava checks at \
         most 64 a log"
    );
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &home)
        .args(["--kill", "gpg-agent"])
        .output();
}
