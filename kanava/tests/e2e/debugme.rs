//! debug-me logs through `kanava verify` and the real `debug-me --verify`: real logs from the
//! reference program, and tampered copies of them, get the same verdict from both, with the
//! failure on the same line. Logs crafted against the verifier (a long log misordered at its
//! end, lines that need a search, many keys) get their verdict in work linear in their length,
//! and a log with an appended user key verifies, as protocol 1 wants, with a warning.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kanava_debugme::recover::{CHECKS_PER_LINE, MAX_CHECKS_PER_LINE, Side};
use kanava_debugme::synthetic::{
    self, Flavour, SyntheticLog, many_keys, misordered_tail, typing_session,
};

use crate::support::private_dir;

/// Real logs written by debug-me 1.20220324 (from the protocol specification).
const REAL_LOGS: [(&str, &str); 3] = [
    (
        "user-log",
        include_str!("../../../crates/debugme/testdata/appendix-a.log"),
    ),
    (
        "gpg-controls",
        include_str!("../../../crates/debugme/testdata/appendix-b-controls.log"),
    ),
    (
        "developer-entered",
        include_str!("../../../crates/debugme/testdata/developer-entered.log"),
    ),
];

/// A private GnuPG home for debug-me (it imports developer keys), and a working directory.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        private_dir(&dir.path().join("gnupg"));
        Scratch(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn debug_me_verify(&self, log: &Path) -> Output {
        Command::new("debug-me")
            .arg("--verify")
            .arg(log)
            .env("GNUPGHOME", self.0.path().join("gnupg"))
            .current_dir(self.0.path())
            .output()
            .expect("debug-me is installed (apt-get install debug-me)")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.0.path().join("gnupg"))
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

fn kanava_verify(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kanava"))
        .arg("verify")
        .args(args)
        .output()
        .unwrap()
}

/// The line debug-me names in `Line N: …`.
fn reference_line(out: &Output) -> Option<usize> {
    let text = String::from_utf8_lossy(&out.stderr);
    let at = text.find("Line ")? + 5;
    text[at..].split(':').next()?.parse().ok()
}

/// Tampered copies of a log: a changed byte in some data, a flipped signature byte, a deleted
/// middle line, two lines swapped, a hash of the wrong length, a line that is not JSON, and
/// one with invalid UTF-8.
pub(crate) fn tampered(log: &str) -> Vec<(String, Vec<u8>)> {
    let lines: Vec<&str> = log.lines().collect();
    let joined = |lines: &[&str]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let mut copies = Vec::new();
    let last = lines.len() - 1;
    // A letter of the signed data (a Seen's output or a chat text) changes case.
    let mut changed = lines[last].to_owned().into_bytes();
    let data_at = ["Data\":{\"v\":\"", "ChatMessage\":[{\"v\":\""]
        .iter()
        .find_map(|key| lines[last].find(key).map(|at| at + key.len()))
        .expect("the last line carries data");
    let letter = data_at
        + changed[data_at..]
            .iter()
            .position(u8::is_ascii_alphabetic)
            .unwrap();
    changed[letter] ^= 0x20;
    let mut bytes = joined(&lines[..last]).into_bytes();
    bytes.extend(changed);
    bytes.push(b'\n');
    copies.push(("changed-byte".to_owned(), bytes));
    let signature_at = lines[last].find("Ed25519Signature\":{\"b64\":\"").unwrap() + 27;
    let mut flipped = lines[last].to_owned().into_bytes();
    flipped[signature_at] = if flipped[signature_at] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let mut bytes = joined(&lines[..last]).into_bytes();
    bytes.extend(flipped);
    bytes.push(b'\n');
    copies.push(("flipped-signature".to_owned(), bytes));
    if lines.len() >= 3 {
        let mut without = lines.clone();
        without.remove(1);
        copies.push(("deleted-middle".to_owned(), joined(&without).into_bytes()));
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        copies.push(("swapped".to_owned(), joined(&swapped).into_bytes()));
    }
    // The pointer to the previous activity, cut short or doubled in length.
    let pointer = lines[last].find("\"prevActivity\":{").and_then(|at| {
        let key = "\"hashValue\":{\"v\":\"";
        let start = at + lines[last][at..].find(key)? + key.len();
        let end = start + lines[last][start..].find('"')?;
        Some((start, end))
    });
    if let Some((start, end)) = pointer {
        let hex = &lines[last][start..end];
        for (how, value) in [
            ("short-hash", hex[..10].to_owned()),
            ("long-hash", hex.repeat(2)),
        ] {
            let mut bytes = joined(&lines[..last]).into_bytes();
            bytes.extend(
                format!("{}{value}{}\n", &lines[last][..start], &lines[last][end..]).into_bytes(),
            );
            copies.push((how.to_owned(), bytes));
        }
    }
    copies.push((
        "not-json".to_owned(),
        format!("{}not json\n", joined(&lines[..1])).into_bytes(),
    ));
    let mut invalid = joined(&lines[..1]).into_bytes();
    invalid.extend(b"{\"loggedMessage\xff\":1}\n");
    copies.push(("invalid-utf8".to_owned(), invalid));
    copies
}

#[test]
fn kanava_verify_reaches_debug_mes_verdict_on_real_and_tampered_logs() {
    let scratch = Scratch::new();
    let mut compared = 0;
    for (name, log) in REAL_LOGS {
        // (file, bytes, whether the reference must reject it)
        let mut cases = vec![(format!("{name}.log"), log.as_bytes().to_vec(), false)];
        if name != "developer-entered" {
            cases.extend(tampered(log).into_iter().map(|(how, bytes)| {
                // Control messages are not chained: removing or reordering them goes unnoticed
                // by protocol 1 (kanava verify says so in its warnings).
                // And the pointers written in a log are not trusted but re-derived from the
                // signatures, so a pointer of the wrong length changes nothing.
                let undetectable = (name == "gpg-controls"
                    && (how == "deleted-middle" || how == "swapped"))
                    || how.ends_with("-hash");
                (format!("{name}-{how}.log"), bytes, !undetectable)
            }));
        }
        for (file, bytes, rejected) in cases {
            let path = scratch.write(&file, &bytes);
            let reference = scratch.debug_me_verify(&path);
            if rejected {
                assert!(!reference.status.success(), "{file} is not a tampering");
            }
            let ours = kanava_verify(&[&path]);
            assert_eq!(
                ours.status.success(),
                reference.status.success(),
                "{file}: debug-me said {:?} {}, kanava said {}{}",
                reference.status,
                String::from_utf8_lossy(&reference.stderr),
                String::from_utf8_lossy(&ours.stdout),
                String::from_utf8_lossy(&ours.stderr),
            );
            if let Some(line) = reference_line(&reference) {
                let ours = String::from_utf8_lossy(&ours.stderr);
                assert!(
                    ours.contains(&format!(": line {line}: ")),
                    "{file}: debug-me blames line {line}; kanava: {ours}"
                );
            }
            compared += 1;
        }
    }
    assert!(compared >= 17, "{compared} logs compared");
    // The complete logs verify, several at once. (The lone developer line cannot: the key that
    // signed it is in another log, and both verifiers reject it, as checked above.)
    let originals: Vec<PathBuf> = REAL_LOGS[..2]
        .iter()
        .map(|(name, _)| scratch.0.path().join(format!("{name}.log")))
        .collect();
    let paths: Vec<&Path> = originals.iter().map(PathBuf::as_path).collect();
    let all = kanava_verify(&paths);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
}

#[test]
fn verify_reports_keys_gpg_signers_and_what_protocol_1_cannot_prove() {
    let scratch = Scratch::new();
    let path = scratch.write("controls.log", REAL_LOGS[1].1.as_bytes());
    let out = Command::new(env!("CARGO_BIN_EXE_kanava"))
        .args(["verify", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["keys"][1]["role"], "developer");
    assert_eq!(report["keys"][1]["gpg_signer"], "Dev <dev@example.org>");
    assert_eq!(report["keys"][1]["accepted_at"], serde_json::json!([3]));
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("truncated") && warnings.contains("not chained"),
        "{warnings}"
    );

    // A developer key whose GnuPG statement is for another key is a bad GnuPG signature.
    let forged = REAL_LOGS[1]
        .1
        .replacen("859ad19064262067", "959ad19064262067", 1);
    let path = scratch.write("forged.log", forged.as_bytes());
    let out = kanava_verify(&[&path]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("line 2: "), "{text}");
    let reference = scratch.debug_me_verify(&path);
    assert!(!reference.status.success());
}

/// `kanava verify --json` on one log: its report.
fn kanava_verify_json(log: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_kanava"))
        .args(["verify", "--json"])
        .arg(log)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The most signature checks `kanava verify` may make on a log of `lines` lines.
fn linear_bound(lines: usize) -> u64 {
    MAX_CHECKS_PER_LINE + CHECKS_PER_LINE * lines as u64
}

#[test]
fn a_long_log_misordered_at_its_end_gets_its_verdict_in_linear_work() {
    let scratch = Scratch::new();
    // Short enough for debug-me, whose search over every pair grows with the square: both
    // name the line before the last.
    let short = scratch.write("short.log", misordered_tail(40).text().as_bytes());
    let reference = scratch.debug_me_verify(&short);
    let said = String::from_utf8_lossy(&reference.stderr);
    assert!(said.contains("Line 39: Invalid hash chain"), "{said}");
    let ours = kanava_verify_json(&short);
    assert_eq!(ours["line"], 39, "{ours}");
    // As long as the real user log debug-me took 51 minutes over: the same verdict, with about
    // one signature check a line.
    let long = scratch.write("long.log", misordered_tail(3_021).text().as_bytes());
    let report = kanava_verify_json(&long);
    assert_eq!(report["verified"], false);
    assert_eq!(
        report["error"],
        "line 3020: invalid hash chain: it points to line 3021, which comes after it"
    );
    let checks = report["signature_checks"].as_u64().unwrap();
    assert!((3_000..=3_021).contains(&checks), "{checks} checks");
}

#[test]
fn crafted_worst_cases_get_a_verdict_naming_the_line_in_linear_work() {
    let scratch = Scratch::new();
    let crafted = [
        (
            "skipping-chain",
            skipping_chain as fn(usize) -> SyntheticLog,
        ),
        ("many-keys", many_keys),
    ];
    for (name, log) in crafted {
        // Short: both verifiers find every pointer and signer.
        let short = scratch.write(&format!("{name}-40.log"), log(40).text().as_bytes());
        let reference = scratch.debug_me_verify(&short);
        assert!(
            reference.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&reference.stderr)
        );
        let ours = kanava_verify_json(&short);
        assert_eq!(ours["verified"], true, "{name}: {ours}");
        // Long: the search is bounded, and the line where it gives up is named.
        let long = scratch.write(&format!("{name}-3021.log"), log(3_021).text().as_bytes());
        let report = kanava_verify_json(&long);
        assert_eq!(report["verified"], false, "{name}: {report}");
        let line = report["line"].as_u64().unwrap();
        let error = report["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!("line {line}: cannot recover the chain within ")),
            "{name}: {error}"
        );
        let checks = report["signature_checks"].as_u64().unwrap();
        assert!(checks <= linear_bound(3_021), "{name}: {checks} checks");
    }
}

/// A server's log of `lines` lines in which every Seen needs a search.
fn skipping_chain(lines: usize) -> SyntheticLog {
    synthetic::skipping_chain(lines, Flavour::Server)
}

#[test]
fn an_appended_user_key_verifies_with_a_warning() {
    let scratch = Scratch::new();
    let mut log = typing_session(20, Flavour::User);
    let intruder = synthetic::key(9);
    log.session_key(Side::User, &intruder);
    log.seen(&intruder, b"rm -rf ~\r\n", log.honest_pointers(), 0.1);
    let path = scratch.write("appended.log", log.text().as_bytes());
    // Protocol 1 takes any user key: debug-me says the log verifies, and so does kanava.
    let reference = scratch.debug_me_verify(&path);
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let out = kanava_verify(&[&path]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let intruder = base16ct::lower::encode_string(&intruder.public().0);
    assert!(
        text.contains(&format!(
            "warning: user key {intruder} (line 21) is a second user key"
        )) && text.contains("it signed 1 activity (first at line 22)"),
        "{text}"
    );
    // Without the appended lines, no such warning.
    let honest = scratch.write(
        "honest.log",
        typing_session(20, Flavour::User).text().as_bytes(),
    );
    let out = kanava_verify(&[&honest]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("second user key"));
}

/// A small deterministic generator (xorshift64) for the mutations below.
pub(crate) struct Mutator(pub(crate) u64);

impl Mutator {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// `log` with one or two of: two lines swapped, a line deleted, a line repeated elsewhere,
    /// a hex digit changed (in a key, a signature, a pointer or a hash).
    pub(crate) fn mutate(&mut self, log: &str) -> String {
        let mut lines: Vec<String> = log.lines().map(str::to_owned).collect();
        for _ in 0..1 + self.below(2) {
            let n = lines.len();
            let at = self.below(n);
            match self.below(4) {
                0 => lines.swap(at, self.below(n)),
                1 if n > 1 => {
                    lines.remove(at);
                }
                2 => {
                    let copy = lines[at].clone();
                    lines.insert(self.below(n), copy);
                }
                _ => {
                    let mut bytes = lines[at].clone().into_bytes();
                    let digits: Vec<usize> = (0..bytes.len())
                        .filter(|&i| bytes[i].is_ascii_hexdigit())
                        .collect();
                    let i = digits[self.below(digits.len())];
                    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
                    lines[at] = String::from_utf8(bytes).unwrap();
                }
            }
        }
        lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

#[test]
fn mutated_logs_of_every_shape_get_debug_mes_verdict_on_the_same_line() {
    let scratch = Scratch::new();
    let shapes = [
        typing_session(16, Flavour::User),
        typing_session(16, Flavour::Server),
        skipping_chain(12),
        misordered_tail(12),
        many_keys(12),
    ]
    .map(|log| log.text());
    let mut mutator = Mutator(0x9e37_79b9_7f4a_7c15);
    let mut paths = Vec::new();
    let mut expected = Vec::new();
    for run in 0..120 {
        let log = mutator.mutate(&shapes[run % shapes.len()]);
        let path = scratch.write(&format!("mutated-{run}.log"), log.as_bytes());
        let reference = scratch.debug_me_verify(&path);
        expected.push((reference.status.success(), reference_line(&reference)));
        paths.push(path);
    }
    let refused = expected.iter().filter(|(verified, _)| !verified).count();
    assert!(
        (30..=110).contains(&refused),
        "{refused} of 120 refused: the mutations should break some logs and not others"
    );
    let paths: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_kanava"))
        .args(["verify", "--json"])
        .args(&paths)
        .output()
        .unwrap();
    let reports: Vec<serde_json::Value> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(reports.len(), paths.len());
    for ((report, (verified, line)), path) in reports.iter().zip(&expected).zip(&paths) {
        assert_eq!(
            (report["verified"].as_bool(), report["line"].as_u64()),
            (Some(*verified), line.map(|l| l as u64)),
            "{}: debug-me and kanava disagree: {report}",
            path.display()
        );
    }
}
