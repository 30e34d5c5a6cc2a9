//! Ed25519 signatures over exactly the bytes protocol 1 names: the 128 hex characters of
//! [`hash::activity_signed`] or [`hash::control_signed`], with no prehash.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::hash::{self, ActivityKind};
use crate::model::{Activity, Control, PublicKey, Signature};

/// Whether `signature` is an Ed25519 signature of `bytes` by `key`. Other signature kinds and
/// malformed keys never verify.
pub fn verifies(key: &PublicKey, bytes: &[u8], signature: &Signature) -> bool {
    let Signature::Ed25519(signature) = signature else {
        return false;
    };
    let (Ok(key), Ok(signature)) = (
        <[u8; 32]>::try_from(key.0.as_slice()),
        <[u8; 64]>::try_from(signature.as_slice()),
    ) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&key) else {
        return false;
    };
    key.verify_strict(bytes, &ed25519_dalek::Signature::from_bytes(&signature))
        .is_ok()
}

/// Whether an activity's signature verifies under `key`, with the pointers it holds.
pub fn activity_verifies<A: ActivityKind>(key: &PublicKey, activity: &Activity<A>) -> bool {
    verifies(key, &hash::activity_signed(activity), &activity.signature)
}

/// Whether a control's signature verifies under `key`.
pub fn control_verifies(key: &PublicKey, control: &Control) -> bool {
    verifies(key, &hash::control_signed(control), &control.signature)
}

/// A session key pair.
pub struct SessionKey(SigningKey);

impl SessionKey {
    /// The key pair of a 32-byte secret.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&secret))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes().to_vec())
    }

    /// Signs `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> Signature {
        Signature::Ed25519(self.0.sign(bytes).to_bytes().to_vec())
    }

    /// Sets the activity's signature from its content and pointers.
    pub fn sign_activity<A: ActivityKind>(&self, activity: &mut Activity<A>) {
        activity.signature = self.sign(&hash::activity_signed(activity));
    }

    /// Sets the control's signature.
    pub fn sign_control(&self, control: &mut Control) {
        control.signature = self.sign(&hash::control_signed(control));
    }
}
