//! The proof a web client gives that it holds the key it logs in with: an SSHSIG signature
//! (OpenSSH's format, as `ssh-keygen -Y sign -n kanava-web` makes and as the browser makes with
//! WebCrypto) over `NAME \n NONCE`, the nonce being the one the server's hello sent on this
//! connection, so that a signature is good for one login only.

use kanava_core::IdentityKey;
use kanava_mles::proof::decode_sshsig;
use ssh_key::{HashAlg, PublicKey};

/// The SSHSIG namespace of a web login: a signature made for anything else never counts.
pub const NAMESPACE: &str = "kanava-web";

/// Longest public key or signature text looked at (an RSA-16384 signature, armoured, fits).
const MAX_TEXT: usize = 8 * 1024;

/// Why a login's key or proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The key is not an OpenSSH public key.
    #[error("key: expected an OpenSSH public key (ssh-ed25519 AAAA…)")]
    BadKey,
    /// The signature is not the base64 (or armour) of an SSHSIG blob.
    #[error("signature: expected the base64 of an SSHSIG signature (ssh-keygen -Y sign)")]
    Malformed,
    /// Signed for another namespace.
    #[error("signature made for another namespace: sign with namespace kanava-web")]
    Namespace,
    /// Signed by another key than the one given.
    #[error("signature made by another key than the one given")]
    OtherKey,
    /// Does not verify over the name and this connection's nonce.
    #[error("signature does not match NAME\\nNONCE with this connection's nonce")]
    BadSignature,
}

impl ProofError {
    /// The refusal code the client gets.
    pub fn code(self) -> &'static str {
        match self {
            ProofError::BadKey => "bad_key",
            _ => "bad_signature",
        }
    }
}

/// The bytes a login signs.
pub fn message(name: &str, nonce: &str) -> Vec<u8> {
    format!("{name}\n{nonce}").into_bytes()
}

/// Parses `key` (OpenSSH format) as the key of an identity, its comment dropped, added now.
pub fn identity_key(key: &str, now_ms: u64) -> Result<IdentityKey, ProofError> {
    if key.len() > MAX_TEXT {
        return Err(ProofError::BadKey);
    }
    let mut key = PublicKey::from_openssh(key.trim()).map_err(|_| ProofError::BadKey)?;
    key.set_comment("");
    Ok(IdentityKey {
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        public_key: key.to_openssh().map_err(|_| ProofError::BadKey)?,
        added_ms: now_ms,
        pending: false,
    })
}

/// Checks that `signature` is `key`'s SSHSIG over `NAME \n NONCE` in [`NAMESPACE`].
pub fn verify(key: &str, signature: &str, name: &str, nonce: &str) -> Result<(), ProofError> {
    if key.len() > MAX_TEXT {
        return Err(ProofError::BadKey);
    }
    let key = PublicKey::from_openssh(key.trim()).map_err(|_| ProofError::BadKey)?;
    if signature.len() > MAX_TEXT {
        return Err(ProofError::Malformed);
    }
    let signature = decode_sshsig(signature).ok_or(ProofError::Malformed)?;
    if signature.namespace() != NAMESPACE {
        return Err(ProofError::Namespace);
    }
    if signature.public_key() != key.key_data() {
        return Err(ProofError::OtherKey);
    }
    key.verify(NAMESPACE, &message(name, nonce), &signature)
        .map_err(|_| ProofError::BadSignature)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use ssh_key::{LineEnding, PrivateKey, SshSig};

    use super::*;

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn sign(key: &PrivateKey, namespace: &str, name: &str, nonce: &str) -> SshSig {
        key.sign(namespace, HashAlg::Sha512, &message(name, nonce))
            .unwrap()
    }

    fn base64(signature: &SshSig) -> String {
        use ssh_key::encoding::Encode as _;
        let mut bytes = Vec::new();
        signature.encode(&mut bytes).unwrap();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn a_signature_over_the_name_and_nonce_proves_the_key_base64_or_armoured() {
        let alice = key(1);
        let public = alice.public_key().to_openssh().unwrap();
        let signature = sign(&alice, NAMESPACE, "alice", "n0nce");
        assert_eq!(
            verify(&public, &base64(&signature), "alice", "n0nce"),
            Ok(())
        );
        let armoured = signature.to_pem(LineEnding::LF).unwrap();
        assert_eq!(verify(&public, &armoured, "alice", "n0nce"), Ok(()));
        let with_comment = format!("{public} kanava-web");
        assert_eq!(verify(&with_comment, &armoured, "alice", "n0nce"), Ok(()));
        let identity = identity_key(&with_comment, 5).unwrap();
        assert_eq!(identity.public_key, public);
        assert!(identity.fingerprint.starts_with("SHA256:"));
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        let alice = key(1);
        let public = alice.public_key().to_openssh().unwrap();
        let good = base64(&sign(&alice, NAMESPACE, "alice", "n0nce"));
        assert_eq!(
            verify(&public, &good, "alice", "other"),
            Err(ProofError::BadSignature)
        );
        assert_eq!(
            verify(&public, &good, "bob", "n0nce"),
            Err(ProofError::BadSignature)
        );
        let mles = base64(&sign(&alice, "kanava-mles", "alice", "n0nce"));
        assert_eq!(
            verify(&public, &mles, "alice", "n0nce"),
            Err(ProofError::Namespace)
        );
        let bob = key(2).public_key().to_openssh().unwrap();
        assert_eq!(
            verify(&bob, &good, "alice", "n0nce"),
            Err(ProofError::OtherKey)
        );
        assert_eq!(
            verify("ssh-ed25519 nope", &good, "alice", "n0nce"),
            Err(ProofError::BadKey)
        );
        for bad in ["", "!!!", "AAAA", &"A".repeat(MAX_TEXT + 1)] {
            assert_eq!(
                verify(&public, bad, "alice", "n0nce"),
                Err(ProofError::Malformed),
                "{bad:.20}"
            );
        }
        assert_eq!(ProofError::BadKey.code(), "bad_key");
        assert_eq!(ProofError::OtherKey.code(), "bad_signature");
    }
}
