//! debug-me's structural hashing: every value hashes to the 128 lowercase hex characters of a
//! SHA-512, and composites hash those hex strings, tagged with the constructor's name. The
//! chain hash of an activity, and the bytes each signature covers, are built from these.

use sha2::{Digest, Sha512};

use crate::model::{
    Activity, Control, ControlAction, Entered, Hash, HashMethod, PerhapsSigned, PublicKey, Seen,
    Signature,
};

/// 128 lowercase hex characters.
pub type Hex = Vec<u8>;

/// `H(bytes)`: the lowercase hex of SHA-512.
pub fn h(bytes: &[u8]) -> Hex {
    base16ct::lower::encode_string(&Sha512::digest(bytes)).into_bytes()
}

/// `L(h1, …, hn)`: the hash of the concatenation.
pub fn l(parts: &[&[u8]]) -> Hex {
    let mut digest = Sha512::new();
    for part in parts {
        digest.update(part);
    }
    base16ct::lower::encode_string(&digest.finalize()).into_bytes()
}

/// `T(tag, h)`: `H(H(tag) ‖ h)`.
pub fn t(tag: &str, hash: &[u8]) -> Hex {
    l(&[&h(tag.as_bytes()), hash])
}

/// `U(maybe h)`: the hash if present, else `H("")` (debug-me's `hashOfMaybeUnsafe`, kept so that
/// old logs verify: an absent pointer and one equal to `H("")` hash alike).
pub fn u(hash: Option<&Hash>) -> Hex {
    hash.map_or_else(|| h(b""), |hash| hash.value.clone())
}

/// A [`Hash`] of SHA-512 hex.
pub fn sha512(value: Hex) -> Hash {
    Hash {
        method: HashMethod::Sha512,
        value,
    }
}

/// Haskell's `show` of a `Double`, which the elapsed time is hashed through.
pub fn show(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x < 0.0 || (x == 0.0 && x.is_sign_negative()) {
        return format!("-{}", show(-x));
    }
    if x == 0.0 {
        return "0.0".into();
    }
    // Shortest round-trip digits d1.d2…dn × 10^exp, so x = 0.d1…dn × 10^(exp+1).
    let scientific = format!("{x:e}");
    let (mantissa, exp) = scientific.split_once('e').expect("{:e} has an exponent");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let e = exp.parse::<i32>().expect("{:e} exponent is an integer") + 1;
    if (0..=7).contains(&e) {
        let e = e as usize;
        let whole = if e == 0 {
            "0".to_owned()
        } else if digits.len() >= e {
            digits[..e].to_owned()
        } else {
            format!("{digits:0<e$}")
        };
        let rest = digits.get(e..).filter(|r| !r.is_empty()).unwrap_or("0");
        format!("{whole}.{rest}")
    } else {
        let rest = if digits.len() > 1 { &digits[1..] } else { "0" };
        format!("{}.{rest}e{}", &digits[..1], e - 1)
    }
}

/// The hash of a signature.
pub fn signature(signature: &Signature) -> Hex {
    match signature {
        Signature::Ed25519(s) => t("Ed25519Signature", &h(s)),
        Signature::Other(s) => t("OtherSignature", &h(s)),
    }
}

/// The hash of a public key.
pub fn public_key(key: &PublicKey) -> Hex {
    t("PublicKey", &h(&key.0))
}

fn perhaps_signed(key: &PerhapsSigned) -> Hex {
    match key {
        PerhapsSigned::UnSigned(key) => t("UnSigned", &public_key(key)),
        PerhapsSigned::GpgSigned(key, sig, export) => t(
            "GpgSigned",
            &l(&[
                &public_key(key),
                &t("GpgSig", &h(sig)),
                &t("GpgKeyExport", &h(export)),
            ]),
        ),
    }
}

/// The hash of a control action.
pub fn control_action(action: &ControlAction) -> Hex {
    match action {
        ControlAction::EnteredRejected {
            entered_rejected,
            entered_last_accepted,
        } => t(
            "EnteredRejected",
            &l(&[&entered_rejected.value, &u(entered_last_accepted.as_ref())]),
        ),
        ControlAction::SessionKey(key, version) => {
            t("SessionKey", &l(&[&perhaps_signed(key), &h(version)]))
        }
        ControlAction::SessionKeyAccepted(key) => t("SessionKeyAccepted", &public_key(key)),
        ControlAction::SessionKeyRejected(key) => t("SessionKeyRejected", &public_key(key)),
        ControlAction::ChatMessage(sender, text) => t("ChatMessage", &l(&[&h(sender), &h(text)])),
    }
}

/// What a control's signature covers: `T("Control", hash(action))`.
pub fn control_signed(control: &Control) -> Hex {
    t("Control", &control_action(&control.control))
}

/// A Seen or an Entered: the two kinds of activity.
pub trait ActivityKind {
    /// The activity's own hash.
    fn hash(&self) -> Hex;
}

impl ActivityKind for Seen {
    fn hash(&self) -> Hex {
        t("Seen", &l(&[&h(&self.seen_data)]))
    }
}

impl ActivityKind for Entered {
    fn hash(&self) -> Hex {
        t(
            "Entered",
            &l(&[&h(&self.entered_data), &h(&self.echo_data)]),
        )
    }
}

/// The hash of an elapsed time.
pub fn elapsed_time(seconds: f64) -> Hex {
    t("ElapsedTime", &h(show(seconds).as_bytes()))
}

/// The hashes of an activity's fields but its signature: the chain hash's list, less its last.
fn activity_parts<A: ActivityKind>(activity: &Activity<A>) -> [Hex; 4] {
    [
        activity.activity.hash(),
        u(activity.prev_activity.as_ref()),
        u(activity.prev_entered.as_ref()),
        elapsed_time(activity.elapsed_time),
    ]
}

/// What an activity's signature covers: the chain hash's list without the signature.
pub fn activity_signed<A: ActivityKind>(activity: &Activity<A>) -> Hex {
    let [a, pa, pe, time] = activity_parts(activity);
    t("Activity", &l(&[&a, &pa, &pe, &time]))
}

/// The chain hash of an activity (`loggedHash` in user and developer logs).
pub fn activity<A: ActivityKind>(activity: &Activity<A>) -> Hash {
    let [a, pa, pe, time] = activity_parts(activity);
    let signature = signature(&activity.signature);
    sha512(t("Activity", &l(&[&a, &pa, &pe, &time, &signature])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(hex: &[u8]) -> &str {
        std::str::from_utf8(hex).unwrap()
    }

    #[test]
    fn primitives() {
        assert_eq!(
            text(&h(b"")),
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
        assert_eq!(u(None), h(b""));
        assert_eq!(l(&[b"ab", b"c"]), h(b"abc"));
    }

    #[test]
    fn show_renders_doubles_as_haskell_does() {
        for (x, shown) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.27964605, "0.27964605"),
            (9.953997539, "9.953997539"),
            (7.21099e-4, "7.21099e-4"),
            (4.8652e-5, "4.8652e-5"),
            (2.309494e-3, "2.309494e-3"),
            (9.81424e-4, "9.81424e-4"),
            (12.0, "12.0"),
            (1e7, "1.0e7"),
            (0.05, "5.0e-2"),
            (1234567.5, "1234567.5"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (-2.5, "-2.5"),
            (1.5e300, "1.5e300"),
            (f64::INFINITY, "Infinity"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(show(x), shown, "{x:e}");
        }
    }

    #[test]
    fn the_worked_example() {
        let seen = Seen {
            seen_data: b"** debug-me session started\r\n".to_vec(),
        };
        assert_eq!(
            text(&seen.hash()),
            "77f7af90ad7f66ac00b2c7ca1b7784e766dfd1fa7c5540a8caa0d72fb32855beee24653d1a14c71b3abacb7de552389372bf5d018a2f75c863b866b476f30cdb"
        );
        assert_eq!(
            text(&elapsed_time(0.0)),
            "e1806922f23660c4727f1f4a84dbb03e5eb4d5d0cd2791aaa214be80aec2a1fb1d573a58091ccf4ec98ad8c3e7883dfea735b9e3d43009dea18020aa61d6fb8e"
        );
    }
}
