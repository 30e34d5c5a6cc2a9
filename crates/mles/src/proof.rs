//! Proof that a Mles client holds a bound name, so that bots and other Mles clients can speak as
//! the name an SSH key bound, and readers can tell them from anyone who merely types the uid.
//!
//! The proof is an SSH signature (OpenSSH's SSHSIG, as `ssh-keygen -Y sign -n kanava-mles`
//! makes) by one of the name's keys over `UID \n CHANNEL \n TIME`, TIME in Unix seconds. It
//! travels in the header's `auth` field as `sshsig:TIME:SIGNATURE`, SIGNATURE being the
//! signature's base64 (the armoured file's body; line breaks and the armour lines are
//! allowed). When the server has a shared Mles key, the usual token goes first, separated by a
//! space: `TOKEN sshsig:…`. Parsing is pure so that it can be fuzzed.

use base64::Engine as _;
use kanava_core::IdentityKey;
use ssh_key::encoding::Decode as _;
use ssh_key::{PublicKey, SshSig};

/// The SSHSIG namespace of a proof: a signature made for anything else never counts.
pub const NAMESPACE: &str = "kanava-mles";

/// How far a proof's time may be from the server's clock.
pub const MAX_SKEW_SECS: u64 = 300;

/// What marks the proof in the `auth` field.
const PREFIX: &str = "sshsig:";

/// Why a proof was refused; [`reason`](Self::reason) is the close reason the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub enum ProofError {
    /// Not `sshsig:TIME:BASE64` with a decodable SSHSIG inside.
    Malformed,
    /// The signature was made for another namespace.
    Namespace,
    /// TIME is more than [`MAX_SKEW_SECS`] from now.
    Stale,
    /// The uid is not a bound name.
    Unbound,
    /// The signing key is not one of the name's keys.
    ForeignKey,
    /// The signature does not verify over this uid, channel and time.
    BadSignature,
}

impl ProofError {
    /// What the client is told (a WebSocket close reason, at most 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            ProofError::Malformed => {
                "proof malformed: expected sshsig:TIME:BASE64 of an SSH signature"
            }
            ProofError::Namespace => {
                "proof signed for another namespace: use ssh-keygen -Y sign -n kanava-mles"
            }
            ProofError::Stale => {
                "proof too old or from the future: sign it again (clocks within 5 minutes)"
            }
            ProofError::Unbound => "proof for a uid that is not a bound name",
            ProofError::ForeignKey => "proof signed by a key that is not one of this name's",
            ProofError::BadSignature => "proof signature does not match this uid, channel and time",
        }
    }
}

/// The two parts an `auth` field may carry: the Mles token and a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthParts<'a> {
    /// The SipHash token of Mles v2, if any.
    pub token: Option<&'a str>,
    /// The text of a proof (`sshsig:…`), if any.
    pub proof: Option<&'a str>,
}

impl<'a> AuthParts<'a> {
    /// Splits an `auth` field: a proof starts with `sshsig:`, and may follow a token after a
    /// space; anything else is the token, as Mles v2 has it.
    pub fn split(auth: Option<&'a str>) -> Self {
        let Some(auth) = auth else {
            return Self::default();
        };
        let trimmed = auth.trim_start();
        if trimmed.starts_with(PREFIX) {
            return Self {
                token: None,
                proof: Some(trimmed),
            };
        }
        match auth.split_once(' ') {
            Some((token, rest)) if rest.trim_start().starts_with(PREFIX) => Self {
                token: Some(token),
                proof: Some(rest.trim_start()),
            },
            _ => Self {
                token: Some(auth),
                proof: None,
            },
        }
    }
}

/// Decodes an SSH signature (OpenSSH's SSHSIG) given as the armoured text `ssh-keygen -Y sign`
/// prints or as its base64 body alone, line breaks allowed: the form a Mles proof and a web
/// login carry.
pub fn decode_sshsig(text: &str) -> Option<SshSig> {
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .flat_map(|line| line.chars().filter(|c| !c.is_ascii_whitespace()))
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    SshSig::decode(&mut bytes.as_slice()).ok()
}

/// A parsed proof, not yet checked against a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// When it was signed, in Unix seconds.
    pub time_secs: u64,
    signature: SshSig,
}

impl Proof {
    /// Parses `sshsig:TIME:SIGNATURE`.
    pub fn parse(text: &str) -> Result<Self, ProofError> {
        let rest = text.strip_prefix(PREFIX).ok_or(ProofError::Malformed)?;
        let (time, signature) = rest.split_once(':').ok_or(ProofError::Malformed)?;
        if time.is_empty() || time.len() > 12 || !time.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProofError::Malformed);
        }
        let time_secs = time.parse().map_err(|_| ProofError::Malformed)?;
        let signature = decode_sshsig(signature).ok_or(ProofError::Malformed)?;
        if signature.namespace() != NAMESPACE {
            return Err(ProofError::Namespace);
        }
        Ok(Self {
            time_secs,
            signature,
        })
    }

    /// The bytes a proof signs.
    pub fn message(uid: &str, channel: &str, time_secs: u64) -> Vec<u8> {
        format!("{uid}\n{channel}\n{time_secs}").into_bytes()
    }

    /// Checks the proof for `uid` in `channel` at `now_secs` against the name's `keys` (its
    /// active ones: a key added but never logged in with proves nothing); returns the
    /// fingerprint of the key that signed.
    pub fn verify(
        &self,
        uid: &str,
        channel: &str,
        now_secs: u64,
        keys: &[IdentityKey],
    ) -> Result<String, ProofError> {
        if self.time_secs.abs_diff(now_secs) > MAX_SKEW_SECS {
            return Err(ProofError::Stale);
        }
        let signer = self.signature.public_key();
        let key = keys
            .iter()
            .filter(|k| !k.pending)
            .find(|k| PublicKey::from_openssh(&k.public_key).is_ok_and(|p| p.key_data() == signer))
            .ok_or(ProofError::ForeignKey)?;
        PublicKey::from(signer.clone())
            .verify(
                NAMESPACE,
                &Self::message(uid, channel, self.time_secs),
                &self.signature,
            )
            .map_err(|_| ProofError::BadSignature)?;
        Ok(key.fingerprint.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::{HashAlg, LineEnding, PrivateKey};

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn identity_key(key: &PrivateKey) -> IdentityKey {
        IdentityKey {
            fingerprint: key.public_key().fingerprint(HashAlg::Sha256).to_string(),
            public_key: key.public_key().to_openssh().unwrap(),
            added_ms: 0,
            pending: false,
        }
    }

    /// The armoured signature, as `ssh-keygen -Y sign` writes it.
    fn armoured(key: &PrivateKey, namespace: &str, uid: &str, channel: &str, time: u64) -> String {
        key.sign(
            namespace,
            HashAlg::Sha512,
            &Proof::message(uid, channel, time),
        )
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap()
    }

    fn signed(key: &PrivateKey, namespace: &str, uid: &str, channel: &str, time: u64) -> String {
        format!(
            "sshsig:{time}:{}",
            armoured(key, namespace, uid, channel, time)
        )
    }

    #[test]
    fn a_signature_by_a_key_of_the_name_proves_it() {
        let alice = key(1);
        let text = signed(&alice, NAMESPACE, "alice", "dev", 1000);
        let proof = Proof::parse(&text).unwrap();
        let keys = [identity_key(&key(2)), identity_key(&alice)];
        assert_eq!(
            proof.verify("alice", "dev", 1100, &keys),
            Ok(keys[1].fingerprint.clone())
        );
        assert_eq!(
            proof.verify("alice", "ops", 1100, &keys),
            Err(ProofError::BadSignature),
            "a proof is for one channel"
        );
        assert_eq!(
            proof.verify("bob", "dev", 1100, &keys),
            Err(ProofError::BadSignature)
        );
        assert_eq!(
            proof.verify("alice", "dev", 1301, &keys),
            Err(ProofError::Stale)
        );
        assert_eq!(
            proof.verify("alice", "dev", 1100, &keys[..1]),
            Err(ProofError::ForeignKey)
        );
        let pending = [IdentityKey {
            pending: true,
            ..identity_key(&alice)
        }];
        assert_eq!(
            proof.verify("alice", "dev", 1100, &pending),
            Err(ProofError::ForeignKey),
            "a pending key proves nothing"
        );
    }

    #[test]
    fn the_body_alone_and_other_namespaces() {
        let alice = key(1);
        let pem = armoured(&alice, NAMESPACE, "alice", "dev", 7);
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let proof = Proof::parse(&format!("sshsig:7:{body}")).unwrap();
        assert!(
            proof
                .verify("alice", "dev", 7, &[identity_key(&alice)])
                .is_ok()
        );
        let file = signed(&alice, "file", "alice", "dev", 7);
        assert_eq!(Proof::parse(&file), Err(ProofError::Namespace));
    }

    #[test]
    fn malformed_proofs() {
        for text in [
            "",
            "sshsig:",
            "sshsig:12",
            "sshsig::AAAA",
            "sshsig:-1:AAAA",
            "sshsig:1:not base64!",
            "sshsig:1:AAAA",
            "sshsig:99999999999999999999:AAAA",
        ] {
            assert_eq!(Proof::parse(text), Err(ProofError::Malformed), "{text:?}");
        }
    }

    #[test]
    fn auth_parts() {
        assert_eq!(AuthParts::split(None), AuthParts::default());
        assert_eq!(
            AuthParts::split(Some("827d5db8dcd8bcef")),
            AuthParts {
                token: Some("827d5db8dcd8bcef"),
                proof: None
            }
        );
        assert_eq!(
            AuthParts::split(Some("sshsig:1:AA")),
            AuthParts {
                token: None,
                proof: Some("sshsig:1:AA")
            }
        );
        assert_eq!(
            AuthParts::split(Some("827d5db8dcd8bcef sshsig:1:AA")),
            AuthParts {
                token: Some("827d5db8dcd8bcef"),
                proof: Some("sshsig:1:AA")
            }
        );
    }
}
