//! Fuzzes offline verification of a whole debug-me log, `kanava_debugme::verify::verify_log`
//! (what `kanava verify` runs on any file it is given), and the chain drawing's recovery,
//! `kanava_debugme_tools::chain::links` (what `kanava graphviz` runs).
//!
//! Beyond "no panic": the work is bounded by the log's length (at most
//! `MAX_CHECKS_PER_LINE + CHECKS_PER_LINE × lines` signature checks, whatever the input); a
//! rejection names a line of the input; a log that verifies counts each of its lines as an
//! activity or a control, and each key's signed activities add up to the activities.

#![no_main]

use kanava_debugme::recover::{CHECKS_PER_LINE, MAX_CHECKS_PER_LINE};
use kanava_debugme::verify::{GpgCheck, verify_log};
use kanava_debugme_tools::chain::links;
use kanava_debugme_tools::log::parse;
use libfuzzer_sys::fuzz_target;

/// Takes a statement that names the key's hash, as gpg would take a good one, so that
/// GnuPG-signed keys go on to sign activities.
struct StatementNamesKey;

impl GpgCheck for StatementNamesKey {
    fn check(&mut self, key_hash: &[u8], statement: &[u8], _: &[u8]) -> Result<String, String> {
        statement
            .windows(key_hash.len())
            .any(|w| w == key_hash)
            .then(|| "Fuzz <fuzz@example.org>".to_owned())
            .ok_or_else(|| "the statement does not name the key".to_owned())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count() as u64;
    let verification = verify_log(text, &mut StatementNamesKey);
    assert!(
        verification.signature_checks <= MAX_CHECKS_PER_LINE + CHECKS_PER_LINE * lines,
        "{} checks for {lines} lines",
        verification.signature_checks
    );
    match &verification.outcome {
        Ok(report) => {
            assert_eq!(report.activities + report.controls, report.lines);
            let signed: usize = report.keys.iter().map(|k| k.signed.count).sum();
            assert_eq!(signed, report.activities, "every activity has one signer");
            assert_eq!(report.signature_checks, verification.signature_checks);
        }
        Err(error) => {
            assert!((1..=lines as usize).contains(&error.line()), "{error}");
        }
    }
    if let Ok(parsed) = parse(data) {
        let drawn = links(&parsed);
        assert_eq!(drawn.len(), parsed.len());
        if verification.outcome.is_ok() {
            assert_eq!(
                drawn.iter().flatten().count(),
                verification.outcome.as_ref().map_or(0, |r| r.activities)
            );
        }
    }
});
