//! The protobuf form of a message, as carried in `L` frames: spec 7.2's proto2 schema,
//! hand-written with prost derives (there is no `protoc` to run prost-build).
//!
//! The wire form has no fields for `prevActivity`/`prevEntered`: [`encode_message`] drops
//! them and [`decode_message`] returns them as `None`, for the receiver to recover by trial.
//!
//! Two choices make the strictness of the real peers expressible with prost:
//! - **Required fields are `Option`s here.** The real server refuses a frame that omits a
//!   `required` field, even an empty bytes field or a `0.0` double, so every one of them must be
//!   sent. prost's own `required` label does emit them, but it decodes a missing one as its
//!   default without telling, and a missing field must be refused. So the structs declare them
//!   `optional` (an `Option` is emitted whenever it is `Some`, empty or zero included), the
//!   encoder always fills them in, and the decoder refuses any that is `None`.
//! - **Sum types are plain optional fields**, not `prost::Oneof`s. A proto `oneof` is exactly
//!   that on the wire, but prost's `Oneof` keeps the last constructor it meets, so a message
//!   naming two constructors could not be refused. The decoder checks that exactly one
//!   constructor (for `ControlActionP` and `PerhapsSignedP`, one complete group of fields) is
//!   present.
//!
//! prost encodes fields in ascending tag order, as the real peers do.

use prost::Message as _;

use crate::model::{
    Activity, AnyMessage, Control, ControlAction, Entered, Hash, HashMethod, Message,
    PerhapsSigned, PublicKey, Seen, Signature, Val,
};

/// Why the bytes of an `L` frame are not a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// Not protobuf, or not this schema's field types.
    #[error("protobuf decode error: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A `required` field (or a field its constructor needs) is absent.
    #[error("required field {0} is missing")]
    MissingField(&'static str),
    /// A sum type with none of its constructors present.
    #[error("{0} has none of its constructors")]
    NoConstructor(&'static str),
    /// A sum type with fields of more than one constructor present.
    #[error("{0} has fields of more than one constructor")]
    AmbiguousConstructor(&'static str),
    /// A hash value that is not 128 lowercase hex ASCII characters.
    #[error("hash value is not 128 lowercase hex ASCII characters")]
    HashValue,
    /// An elapsed time that is NaN or infinite (the JSON log could not record it).
    #[error("elapsed time {0} is not a finite number")]
    ElapsedTime(f64),
}

type Result<T> = std::result::Result<T, WireError>;

#[derive(Clone, PartialEq, prost::Message)]
struct AnyMessageP {
    #[prost(message, optional, tag = "29")]
    user: Option<MsgSeenP>,
    #[prost(message, optional, tag = "30")]
    developer: Option<MsgEnteredP>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MsgSeenP {
    #[prost(message, optional, tag = "4")]
    activity_message: Option<ActSeenP>,
    #[prost(message, optional, tag = "5")]
    control_message: Option<ControlP>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MsgEnteredP {
    #[prost(message, optional, tag = "4")]
    activity_message: Option<ActEnteredP>,
    #[prost(message, optional, tag = "5")]
    control_message: Option<ControlP>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ActSeenP {
    #[prost(message, optional, tag = "6")]
    activity: Option<SeenP>,
    #[prost(message, optional, tag = "7")]
    elapsed: Option<ElapsedTimeP>,
    #[prost(message, optional, tag = "8")]
    sig: Option<SignatureP>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ActEnteredP {
    #[prost(message, optional, tag = "6")]
    activity: Option<EnteredP>,
    #[prost(message, optional, tag = "7")]
    elapsed: Option<ElapsedTimeP>,
    #[prost(message, optional, tag = "8")]
    sig: Option<SignatureP>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SeenP {
    #[prost(bytes = "vec", optional, tag = "1")]
    seen_data: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EnteredP {
    #[prost(bytes = "vec", optional, tag = "2")]
    entered_data: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    echo_data: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ControlP {
    #[prost(message, optional, tag = "9")]
    control: Option<ControlActionP>,
    #[prost(message, optional, tag = "10")]
    sig: Option<SignatureP>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ControlActionP {
    #[prost(message, optional, tag = "11")]
    entered_rejected: Option<HashP>,
    #[prost(message, optional, tag = "12")]
    entered_last_accepted: Option<HashP>,
    #[prost(message, optional, tag = "13")]
    session_key: Option<PerhapsSignedP>,
    #[prost(bytes = "vec", optional, tag = "14")]
    protocol_version: Option<Vec<u8>>,
    #[prost(message, optional, tag = "15")]
    session_key_accepted: Option<PublicKeyP>,
    #[prost(message, optional, tag = "16")]
    session_key_rejected: Option<PublicKeyP>,
    #[prost(bytes = "vec", optional, tag = "17")]
    chat_sender: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "18")]
    chat_message: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SignatureP {
    #[prost(bytes = "vec", optional, tag = "19")]
    ed25519: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "20")]
    other: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PublicKeyP {
    #[prost(bytes = "vec", optional, tag = "21")]
    key: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PerhapsSignedP {
    #[prost(message, optional, tag = "22")]
    gpg_signed_key: Option<PublicKeyP>,
    #[prost(message, optional, tag = "23")]
    gpg_sig: Option<GpgSigP>,
    #[prost(message, optional, tag = "24")]
    gpg_key_export: Option<GpgKeyExportP>,
    #[prost(message, optional, tag = "25")]
    unsigned: Option<PublicKeyP>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GpgSigP {
    #[prost(bytes = "vec", optional, tag = "26")]
    sig: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GpgKeyExportP {
    #[prost(bytes = "vec", optional, tag = "27")]
    export: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ElapsedTimeP {
    #[prost(double, optional, tag = "28")]
    seconds: Option<f64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HashP {
    #[prost(message, optional, tag = "31")]
    method: Option<HashMethodP>,
    #[prost(bytes = "vec", optional, tag = "32")]
    value: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HashMethodP {
    #[prost(bool, optional, tag = "33")]
    sha512: Option<bool>,
    #[prost(bool, optional, tag = "34")]
    sha3: Option<bool>,
}

/// The protobuf bytes of a message (the payload of an `L` frame), without its pointers.
///
/// Every required field is emitted, even when empty or zero, in ascending tag order.
pub fn encode_message(message: &AnyMessage) -> Vec<u8> {
    let wire = match message {
        AnyMessage::User(message) => {
            let (activity_message, control_message) = message_p(message, |seen| ActSeenP {
                activity: Some(SeenP {
                    seen_data: Some(seen.activity.seen_data.clone()),
                }),
                elapsed: Some(elapsed_p(seen.elapsed_time)),
                sig: Some(signature_p(&seen.signature)),
            });
            AnyMessageP {
                user: Some(MsgSeenP {
                    activity_message,
                    control_message,
                }),
                developer: None,
            }
        }
        AnyMessage::Developer(message) => {
            let (activity_message, control_message) = message_p(message, |entered| ActEnteredP {
                activity: Some(EnteredP {
                    entered_data: Some(entered.activity.entered_data.clone()),
                    echo_data: Some(entered.activity.echo_data.clone()),
                }),
                elapsed: Some(elapsed_p(entered.elapsed_time)),
                sig: Some(signature_p(&entered.signature)),
            });
            AnyMessageP {
                user: None,
                developer: Some(MsgEnteredP {
                    activity_message,
                    control_message,
                }),
            }
        }
    };
    wire.encode_to_vec()
}

/// Reads the protobuf bytes of a message; its pointers come back as `None`.
///
/// Refuses anything the schema does not allow: a missing required field, a sum type with no
/// constructor or with fields of two, a hash value that is not 128 lowercase hex characters,
/// and an elapsed time that is not finite. Unknown fields are skipped, as protobuf does.
pub fn decode_message(bytes: &[u8]) -> Result<AnyMessage> {
    let wire = AnyMessageP::decode(bytes)?;
    match (wire.user, wire.developer) {
        (Some(user), None) => Ok(AnyMessage::User(message(
            "MsgSeenP",
            user.activity_message,
            user.control_message,
            |act| {
                let seen = required(act.activity, "ActSeenP.activity = 6")?;
                let seen = Seen {
                    seen_data: required(seen.seen_data, "SeenP.seen_data = 1")?,
                };
                activity(
                    seen,
                    required(act.elapsed, "ActSeenP.elapsed = 7")?,
                    required(act.sig, "ActSeenP.sig = 8")?,
                )
            },
        )?)),
        (None, Some(developer)) => Ok(AnyMessage::Developer(message(
            "MsgEnteredP",
            developer.activity_message,
            developer.control_message,
            |act| {
                let entered = required(act.activity, "ActEnteredP.activity = 6")?;
                let entered = Entered {
                    entered_data: required(entered.entered_data, "EnteredP.entered_data = 2")?,
                    echo_data: required(entered.echo_data, "EnteredP.echo_data = 3")?,
                };
                activity(
                    entered,
                    required(act.elapsed, "ActEnteredP.elapsed = 7")?,
                    required(act.sig, "ActEnteredP.sig = 8")?,
                )
            },
        )?)),
        (None, None) => Err(WireError::NoConstructor("AnyMessageP")),
        (Some(_), Some(_)) => Err(WireError::AmbiguousConstructor("AnyMessageP")),
    }
}

/// The wire fields of a [`Message`]: the activity (built by `act`) or the control.
fn message_p<A, P>(
    message: &Message<A>,
    act: impl FnOnce(&Activity<A>) -> P,
) -> (Option<P>, Option<ControlP>) {
    match message {
        Message::Activity(activity) => (Some(act(activity)), None),
        Message::Control(control) => (
            None,
            Some(ControlP {
                control: Some(control_action_p(&control.control)),
                sig: Some(signature_p(&control.signature)),
            }),
        ),
    }
}

fn message<A, P>(
    name: &'static str,
    activity_message: Option<P>,
    control_message: Option<ControlP>,
    act: impl FnOnce(P) -> Result<Activity<A>>,
) -> Result<Message<A>> {
    match (activity_message, control_message) {
        (Some(activity), None) => Ok(Message::Activity(act(activity)?)),
        (None, Some(control_p)) => Ok(Message::Control(control(control_p)?)),
        (None, None) => Err(WireError::NoConstructor(name)),
        (Some(_), Some(_)) => Err(WireError::AmbiguousConstructor(name)),
    }
}

fn activity<A>(activity: A, elapsed: ElapsedTimeP, sig: SignatureP) -> Result<Activity<A>> {
    let seconds = required(elapsed.seconds, "ElapsedTimeP.seconds = 28")?;
    if !seconds.is_finite() {
        return Err(WireError::ElapsedTime(seconds));
    }
    Ok(Activity {
        activity,
        prev_activity: None,
        prev_entered: None,
        elapsed_time: seconds,
        signature: signature(sig)?,
    })
}

fn required<T>(field: Option<T>, name: &'static str) -> Result<T> {
    field.ok_or(WireError::MissingField(name))
}

fn elapsed_p(seconds: f64) -> ElapsedTimeP {
    ElapsedTimeP {
        seconds: Some(seconds),
    }
}

fn signature_p(signature: &Signature) -> SignatureP {
    match signature {
        Signature::Ed25519(bytes) => SignatureP {
            ed25519: Some(bytes.clone()),
            other: None,
        },
        Signature::Other(bytes) => SignatureP {
            ed25519: None,
            other: Some(bytes.clone()),
        },
    }
}

fn signature(wire: SignatureP) -> Result<Signature> {
    match (wire.ed25519, wire.other) {
        (Some(bytes), None) => Ok(Signature::Ed25519(bytes)),
        (None, Some(bytes)) => Ok(Signature::Other(bytes)),
        (None, None) => Err(WireError::NoConstructor("SignatureP")),
        (Some(_), Some(_)) => Err(WireError::AmbiguousConstructor("SignatureP")),
    }
}

fn control(wire: ControlP) -> Result<Control> {
    Ok(Control {
        control: control_action(required(wire.control, "ControlP.control = 9")?)?,
        signature: signature(required(wire.sig, "ControlP.sig = 10")?)?,
    })
}

fn control_action_p(action: &ControlAction) -> ControlActionP {
    let mut wire = ControlActionP::default();
    match action {
        ControlAction::EnteredRejected {
            entered_rejected,
            entered_last_accepted,
        } => {
            wire.entered_rejected = Some(hash_p(entered_rejected));
            wire.entered_last_accepted = entered_last_accepted.as_ref().map(hash_p);
        }
        ControlAction::SessionKey(key, version) => {
            wire.session_key = Some(perhaps_signed_p(key));
            wire.protocol_version = Some(version.clone());
        }
        ControlAction::SessionKeyAccepted(key) => {
            wire.session_key_accepted = Some(public_key_p(key));
        }
        ControlAction::SessionKeyRejected(key) => {
            wire.session_key_rejected = Some(public_key_p(key));
        }
        ControlAction::ChatMessage(sender, text) => {
            wire.chat_sender = Some(sender.clone());
            wire.chat_message = Some(text.clone());
        }
    }
    wire
}

fn control_action(wire: ControlActionP) -> Result<ControlAction> {
    const NAME: &str = "ControlActionP";
    let groups = [
        wire.entered_rejected.is_some() || wire.entered_last_accepted.is_some(),
        wire.session_key.is_some() || wire.protocol_version.is_some(),
        wire.session_key_accepted.is_some(),
        wire.session_key_rejected.is_some(),
        wire.chat_sender.is_some() || wire.chat_message.is_some(),
    ];
    match groups.iter().filter(|present| **present).count() {
        0 => return Err(WireError::NoConstructor(NAME)),
        1 => {}
        _ => return Err(WireError::AmbiguousConstructor(NAME)),
    }
    if let Some(rejected) = wire.entered_rejected {
        return Ok(ControlAction::EnteredRejected {
            entered_rejected: hash(rejected)?,
            entered_last_accepted: wire.entered_last_accepted.map(hash).transpose()?,
        });
    }
    if wire.entered_last_accepted.is_some() {
        return Err(WireError::MissingField(
            "ControlActionP.entered_rejected = 11",
        ));
    }
    if let Some(key) = wire.session_key_accepted {
        return Ok(ControlAction::SessionKeyAccepted(public_key(key)?));
    }
    if let Some(key) = wire.session_key_rejected {
        return Ok(ControlAction::SessionKeyRejected(public_key(key)?));
    }
    if wire.session_key.is_some() || wire.protocol_version.is_some() {
        return Ok(ControlAction::SessionKey(
            perhaps_signed(required(
                wire.session_key,
                "ControlActionP.session_key = 13",
            )?)?,
            required(
                wire.protocol_version,
                "ControlActionP.protocol_version = 14",
            )?,
        ));
    }
    Ok(ControlAction::ChatMessage(
        required(wire.chat_sender, "ControlActionP.chat_sender = 17")?,
        required(wire.chat_message, "ControlActionP.chat_message = 18")?,
    ))
}

fn public_key_p(key: &PublicKey) -> PublicKeyP {
    PublicKeyP {
        key: Some(key.0.clone()),
    }
}

fn public_key(wire: PublicKeyP) -> Result<PublicKey> {
    Ok(PublicKey(required(wire.key, "PublicKeyP.key = 21")?))
}

fn perhaps_signed_p(key: &PerhapsSigned) -> PerhapsSignedP {
    match key {
        PerhapsSigned::GpgSigned(key, sig, export) => PerhapsSignedP {
            gpg_signed_key: Some(public_key_p(key)),
            gpg_sig: Some(GpgSigP {
                sig: Some(sig.clone()),
            }),
            gpg_key_export: Some(GpgKeyExportP {
                export: Some(export.clone()),
            }),
            unsigned: None,
        },
        PerhapsSigned::UnSigned(key) => PerhapsSignedP {
            unsigned: Some(public_key_p(key)),
            ..PerhapsSignedP::default()
        },
    }
}

fn perhaps_signed(wire: PerhapsSignedP) -> Result<PerhapsSigned> {
    const NAME: &str = "PerhapsSignedP";
    let gpg =
        wire.gpg_signed_key.is_some() || wire.gpg_sig.is_some() || wire.gpg_key_export.is_some();
    match (gpg, wire.unsigned) {
        (false, Some(key)) => Ok(PerhapsSigned::UnSigned(public_key(key)?)),
        (true, None) => Ok(PerhapsSigned::GpgSigned(
            public_key(required(
                wire.gpg_signed_key,
                "PerhapsSignedP.gpg_signed_key = 22",
            )?)?,
            required(
                required(wire.gpg_sig, "PerhapsSignedP.gpg_sig = 23")?.sig,
                "GpgSigP.sig = 26",
            )?,
            required(
                required(wire.gpg_key_export, "PerhapsSignedP.gpg_key_export = 24")?.export,
                "GpgKeyExportP.export = 27",
            )?,
        )),
        (false, None) => Err(WireError::NoConstructor(NAME)),
        (true, Some(_)) => Err(WireError::AmbiguousConstructor(NAME)),
    }
}

fn hash_p(hash: &Hash) -> HashP {
    HashP {
        method: Some(match hash.method {
            HashMethod::Sha512 => HashMethodP {
                sha512: Some(true),
                sha3: None,
            },
            HashMethod::Sha3 => HashMethodP {
                sha512: None,
                sha3: Some(true),
            },
        }),
        value: Some(hash.value.clone()),
    }
}

/// A hash; the method is named by which field is present (its boolean value is not checked).
fn hash(wire: HashP) -> Result<Hash> {
    let method = required(wire.method, "HashP.method = 31")?;
    let method = match (method.sha512, method.sha3) {
        (Some(_), None) => HashMethod::Sha512,
        (None, Some(_)) => HashMethod::Sha3,
        (None, None) => return Err(WireError::NoConstructor("HashMethodP")),
        (Some(_), Some(_)) => return Err(WireError::AmbiguousConstructor("HashMethodP")),
    };
    let value: Val = required(wire.value, "HashP.value = 32")?;
    if value.len() != 128 || !value.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(WireError::HashValue);
    }
    Ok(Hash { method, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::decode_line;

    fn hex_hash(c: u8) -> Hash {
        Hash {
            method: HashMethod::Sha512,
            value: vec![c; 128],
        }
    }

    fn seen(data: &[u8], elapsed: f64) -> AnyMessage {
        AnyMessage::User(Message::Activity(Activity {
            activity: Seen {
                seen_data: data.to_vec(),
            },
            prev_activity: None,
            prev_entered: None,
            elapsed_time: elapsed,
            signature: Signature::Ed25519(vec![1; 64]),
        }))
    }

    fn entered(data: &[u8], echo: &[u8], elapsed: f64, signature: Signature) -> AnyMessage {
        AnyMessage::Developer(Message::Activity(Activity {
            activity: Entered {
                entered_data: data.to_vec(),
                echo_data: echo.to_vec(),
            },
            prev_activity: None,
            prev_entered: None,
            elapsed_time: elapsed,
            signature,
        }))
    }

    fn user_control(action: ControlAction) -> AnyMessage {
        AnyMessage::User(Message::Control(Control {
            control: action,
            signature: Signature::Ed25519(vec![2; 64]),
        }))
    }

    fn developer_control(action: ControlAction, signature: Signature) -> AnyMessage {
        AnyMessage::Developer(Message::Control(Control {
            control: action,
            signature,
        }))
    }

    fn round_trip(message: &AnyMessage) {
        let bytes = encode_message(message);
        assert_eq!(decode_message(&bytes).as_ref(), Ok(message), "{bytes:02x?}");
    }

    fn without_pointers(mut message: AnyMessage) -> AnyMessage {
        match &mut message {
            AnyMessage::User(Message::Activity(a)) => {
                a.prev_activity = None;
                a.prev_entered = None;
            }
            AnyMessage::Developer(Message::Activity(a)) => {
                a.prev_activity = None;
                a.prev_entered = None;
            }
            AnyMessage::User(Message::Control(_)) | AnyMessage::Developer(Message::Control(_)) => {}
        }
        message
    }

    fn decode_p(wire: &AnyMessageP) -> Result<AnyMessage> {
        decode_message(&wire.encode_to_vec())
    }

    fn control_p(action: ControlActionP) -> AnyMessageP {
        AnyMessageP {
            user: Some(MsgSeenP {
                activity_message: None,
                control_message: Some(ControlP {
                    control: Some(action),
                    sig: Some(signature_p(&Signature::Ed25519(vec![0; 64]))),
                }),
            }),
            developer: None,
        }
    }

    fn key_p() -> PublicKeyP {
        public_key_p(&PublicKey(vec![3; 32]))
    }

    #[test]
    fn every_constructor_round_trips() {
        let key = PublicKey(vec![9; 32]);
        for message in [
            seen(b"** debug-me session started\r\n", 0.0),
            seen(&[0xff, 0x00, 0x1b], 7.21099e-4),
            seen(b"", 1e300),
            entered(b"ls\r", b"l", 9.953997539, Signature::Ed25519(vec![5; 64])),
            entered(b"", b"", 0.0, Signature::Other(b"not ed25519".to_vec())),
            user_control(ControlAction::SessionKey(
                PerhapsSigned::UnSigned(key.clone()),
                b"1".to_vec(),
            )),
            developer_control(
                ControlAction::SessionKey(
                    PerhapsSigned::GpgSigned(
                        key.clone(),
                        b"-----BEGIN PGP SIGNED MESSAGE-----\n".to_vec(),
                        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n".to_vec(),
                    ),
                    b"1".to_vec(),
                ),
                Signature::Ed25519(vec![4; 64]),
            ),
            developer_control(
                ControlAction::SessionKey(
                    PerhapsSigned::GpgSigned(key.clone(), Vec::new(), Vec::new()),
                    Vec::new(),
                ),
                Signature::Other(Vec::new()),
            ),
            user_control(ControlAction::SessionKeyAccepted(key.clone())),
            user_control(ControlAction::SessionKeyRejected(key)),
            user_control(ControlAction::EnteredRejected {
                entered_rejected: hex_hash(b'e'),
                entered_last_accepted: None,
            }),
            user_control(ControlAction::EnteredRejected {
                entered_rejected: hex_hash(b'e'),
                entered_last_accepted: Some(Hash {
                    method: HashMethod::Sha3,
                    value: vec![b'0'; 128],
                }),
            }),
            user_control(ControlAction::ChatMessage(
                b"user".to_vec(),
                b"hello from the user".to_vec(),
            )),
            developer_control(
                ControlAction::ChatMessage(Vec::new(), Vec::new()),
                Signature::Other(vec![0; 3]),
            ),
        ] {
            round_trip(&message);
        }
    }

    #[test]
    fn pointers_are_dropped() {
        let AnyMessage::User(Message::Activity(mut activity)) = seen(b"x", 1.5) else {
            unreachable!()
        };
        activity.prev_activity = Some(hex_hash(b'a'));
        activity.prev_entered = Some(hex_hash(b'b'));
        let with = AnyMessage::User(Message::Activity(activity));
        let bytes = encode_message(&with);
        assert_eq!(bytes, encode_message(&without_pointers(with.clone())));
        assert_eq!(decode_message(&bytes), Ok(without_pointers(with)));
    }

    #[test]
    fn the_spec_logs_round_trip_without_pointers() {
        let logs = [
            include_str!("../testdata/appendix-a.log"),
            include_str!("../testdata/appendix-b-controls.log"),
            include_str!("../testdata/developer-entered.log"),
        ];
        let mut count = 0;
        for line in logs.iter().flat_map(|log| log.lines()) {
            if line.trim().is_empty() {
                continue;
            }
            let stripped = without_pointers(decode_line(line).unwrap().message);
            round_trip(&stripped);
            count += 1;
        }
        assert_eq!(count, 9);
    }

    #[test]
    fn empty_and_zero_required_fields_are_sent_in_order() {
        let message = entered(b"a", b"", 0.0, Signature::Ed25519(vec![7, 7]));
        let entered_p = [0x12, 0x01, b'a', 0x1a, 0x00];
        let elapsed_p = [0xe1, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        let signature_p = [0x9a, 0x01, 0x02, 7, 7];
        let mut act = vec![0x32, 5];
        act.extend(entered_p);
        act.extend([0x3a, 10]);
        act.extend(elapsed_p);
        act.extend([0x42, 5]);
        act.extend(signature_p);
        let mut expected = vec![0xf2, 0x01, act.len() as u8 + 2, 0x22, act.len() as u8];
        expected.extend(act);
        assert_eq!(encode_message(&message), expected);
    }

    #[test]
    fn hash_methods_are_sent_as_true() {
        let mut rejected = user_control(ControlAction::EnteredRejected {
            entered_rejected: hex_hash(b'f'),
            entered_last_accepted: None,
        });
        let bytes = encode_message(&rejected);
        // 33 = sha512, varint true; 12 (entered_last_accepted) absent.
        assert!(bytes.windows(3).any(|w| w == [0x88, 0x02, 0x01]));
        assert!(!bytes.contains(&0x62));
        if let AnyMessage::User(Message::Control(c)) = &mut rejected {
            c.control = ControlAction::EnteredRejected {
                entered_rejected: Hash {
                    method: HashMethod::Sha3,
                    value: vec![b'f'; 128],
                },
                entered_last_accepted: None,
            };
        }
        // 34 = sha3.
        assert!(
            encode_message(&rejected)
                .windows(3)
                .any(|w| w == [0x90, 0x02, 0x01])
        );
    }

    #[test]
    fn missing_required_fields_are_refused() {
        let good = AnyMessageP::decode(
            &encode_message(&entered(b"a", b"", 0.0, Signature::Ed25519(vec![0; 64])))[..],
        )
        .unwrap();
        fn act(wire: &mut AnyMessageP) -> &mut ActEnteredP {
            wire.developer
                .as_mut()
                .and_then(|m| m.activity_message.as_mut())
                .unwrap()
        }
        type Remove = fn(&mut ActEnteredP);
        let cases: [(Remove, &str); 6] = [
            (
                |a| a.activity.as_mut().unwrap().echo_data = None,
                "EnteredP.echo_data = 3",
            ),
            (
                |a| a.activity.as_mut().unwrap().entered_data = None,
                "EnteredP.entered_data = 2",
            ),
            (|a| a.activity = None, "ActEnteredP.activity = 6"),
            (|a| a.elapsed = None, "ActEnteredP.elapsed = 7"),
            (
                |a| a.elapsed.as_mut().unwrap().seconds = None,
                "ElapsedTimeP.seconds = 28",
            ),
            (|a| a.sig = None, "ActEnteredP.sig = 8"),
        ];
        for (remove, field) in cases {
            let mut wire = good.clone();
            remove(act(&mut wire));
            assert_eq!(decode_p(&wire), Err(WireError::MissingField(field)));
        }
        assert!(decode_p(&good).is_ok());

        let no_key = control_p(ControlActionP {
            session_key_accepted: Some(PublicKeyP { key: None }),
            ..ControlActionP::default()
        });
        assert_eq!(
            decode_p(&no_key),
            Err(WireError::MissingField("PublicKeyP.key = 21"))
        );
        let mut control = control_p(ControlActionP {
            session_key_accepted: Some(key_p()),
            ..ControlActionP::default()
        });
        assert!(decode_p(&control).is_ok());
        let sent = control
            .user
            .as_mut()
            .and_then(|m| m.control_message.as_mut());
        sent.unwrap().sig = None;
        assert_eq!(
            decode_p(&control),
            Err(WireError::MissingField("ControlP.sig = 10"))
        );
        let sent = control
            .user
            .as_mut()
            .and_then(|m| m.control_message.as_mut());
        sent.unwrap().control = None;
        assert_eq!(
            decode_p(&control),
            Err(WireError::MissingField("ControlP.control = 9"))
        );
    }

    #[test]
    fn sum_types_need_exactly_one_constructor() {
        assert_eq!(
            decode_message(&[]),
            Err(WireError::NoConstructor("AnyMessageP"))
        );
        let user = AnyMessageP::decode(&encode_message(&seen(b"x", 0.0))[..]).unwrap();
        let developer = AnyMessageP::decode(
            &encode_message(&entered(b"x", b"", 0.0, Signature::Other(Vec::new())))[..],
        )
        .unwrap();
        let both = AnyMessageP {
            user: user.user.clone(),
            developer: developer.developer,
        };
        assert_eq!(
            decode_p(&both),
            Err(WireError::AmbiguousConstructor("AnyMessageP"))
        );

        let mut neither = user.clone();
        neither.user.as_mut().unwrap().activity_message = None;
        assert_eq!(
            decode_p(&neither),
            Err(WireError::NoConstructor("MsgSeenP"))
        );
        let mut two = control_p(control_action_p(&ControlAction::ChatMessage(
            b"a".to_vec(),
            b"b".to_vec(),
        )));
        two.user.as_mut().unwrap().activity_message = user.user.unwrap().activity_message;
        assert_eq!(
            decode_p(&two),
            Err(WireError::AmbiguousConstructor("MsgSeenP"))
        );

        let mut signature = AnyMessageP::decode(&encode_message(&seen(b"x", 0.0))[..]).unwrap();
        fn sig(wire: &mut AnyMessageP) -> &mut SignatureP {
            wire.user
                .as_mut()
                .and_then(|m| m.activity_message.as_mut())
                .and_then(|a| a.sig.as_mut())
                .unwrap()
        }
        sig(&mut signature).other = Some(Vec::new());
        assert_eq!(
            decode_p(&signature),
            Err(WireError::AmbiguousConstructor("SignatureP"))
        );
        *sig(&mut signature) = SignatureP::default();
        assert_eq!(
            decode_p(&signature),
            Err(WireError::NoConstructor("SignatureP"))
        );

        let mut method = hash_p(&hex_hash(b'1'));
        method.method = Some(HashMethodP {
            sha512: Some(true),
            sha3: Some(true),
        });
        let action = ControlActionP {
            entered_rejected: Some(method.clone()),
            ..ControlActionP::default()
        };
        assert_eq!(
            decode_p(&control_p(action)),
            Err(WireError::AmbiguousConstructor("HashMethodP"))
        );
        method.method = Some(HashMethodP::default());
        let action = ControlActionP {
            entered_rejected: Some(method),
            ..ControlActionP::default()
        };
        assert_eq!(
            decode_p(&control_p(action)),
            Err(WireError::NoConstructor("HashMethodP"))
        );
    }

    #[test]
    fn a_control_action_is_one_complete_group() {
        let hash = || Some(hash_p(&hex_hash(b'c')));
        let key = || Some(key_p());
        let cases = [
            (
                ControlActionP::default(),
                WireError::NoConstructor("ControlActionP"),
            ),
            (
                ControlActionP {
                    entered_last_accepted: hash(),
                    ..ControlActionP::default()
                },
                WireError::MissingField("ControlActionP.entered_rejected = 11"),
            ),
            (
                ControlActionP {
                    protocol_version: Some(b"1".to_vec()),
                    ..ControlActionP::default()
                },
                WireError::MissingField("ControlActionP.session_key = 13"),
            ),
            (
                ControlActionP {
                    session_key: Some(perhaps_signed_p(&PerhapsSigned::UnSigned(PublicKey(
                        vec![1; 32],
                    )))),
                    ..ControlActionP::default()
                },
                WireError::MissingField("ControlActionP.protocol_version = 14"),
            ),
            (
                ControlActionP {
                    chat_sender: Some(Vec::new()),
                    ..ControlActionP::default()
                },
                WireError::MissingField("ControlActionP.chat_message = 18"),
            ),
            (
                ControlActionP {
                    chat_message: Some(Vec::new()),
                    ..ControlActionP::default()
                },
                WireError::MissingField("ControlActionP.chat_sender = 17"),
            ),
            (
                ControlActionP {
                    entered_rejected: hash(),
                    session_key_accepted: key(),
                    ..ControlActionP::default()
                },
                WireError::AmbiguousConstructor("ControlActionP"),
            ),
            (
                ControlActionP {
                    session_key_accepted: key(),
                    session_key_rejected: key(),
                    ..ControlActionP::default()
                },
                WireError::AmbiguousConstructor("ControlActionP"),
            ),
            (
                ControlActionP {
                    session_key_rejected: key(),
                    chat_message: Some(Vec::new()),
                    ..ControlActionP::default()
                },
                WireError::AmbiguousConstructor("ControlActionP"),
            ),
            (
                ControlActionP {
                    entered_last_accepted: hash(),
                    protocol_version: Some(Vec::new()),
                    ..ControlActionP::default()
                },
                WireError::AmbiguousConstructor("ControlActionP"),
            ),
        ];
        for (action, error) in cases {
            assert_eq!(decode_p(&control_p(action)), Err(error));
        }
    }

    #[test]
    fn a_session_key_is_gpg_signed_or_unsigned() {
        let gpg = perhaps_signed_p(&PerhapsSigned::GpgSigned(
            PublicKey(vec![1; 32]),
            b"sig".to_vec(),
            b"export".to_vec(),
        ));
        let session_key = |key: PerhapsSignedP| {
            control_p(ControlActionP {
                session_key: Some(key),
                protocol_version: Some(b"1".to_vec()),
                ..ControlActionP::default()
            })
        };
        let cases = [
            (
                PerhapsSignedP::default(),
                WireError::NoConstructor("PerhapsSignedP"),
            ),
            (
                PerhapsSignedP {
                    unsigned: Some(key_p()),
                    ..gpg.clone()
                },
                WireError::AmbiguousConstructor("PerhapsSignedP"),
            ),
            (
                PerhapsSignedP {
                    unsigned: Some(key_p()),
                    gpg_key_export: gpg.gpg_key_export.clone(),
                    ..PerhapsSignedP::default()
                },
                WireError::AmbiguousConstructor("PerhapsSignedP"),
            ),
            (
                PerhapsSignedP {
                    gpg_signed_key: None,
                    ..gpg.clone()
                },
                WireError::MissingField("PerhapsSignedP.gpg_signed_key = 22"),
            ),
            (
                PerhapsSignedP {
                    gpg_sig: None,
                    ..gpg.clone()
                },
                WireError::MissingField("PerhapsSignedP.gpg_sig = 23"),
            ),
            (
                PerhapsSignedP {
                    gpg_key_export: None,
                    ..gpg.clone()
                },
                WireError::MissingField("PerhapsSignedP.gpg_key_export = 24"),
            ),
            (
                PerhapsSignedP {
                    gpg_sig: Some(GpgSigP { sig: None }),
                    ..gpg.clone()
                },
                WireError::MissingField("GpgSigP.sig = 26"),
            ),
            (
                PerhapsSignedP {
                    gpg_key_export: Some(GpgKeyExportP { export: None }),
                    ..gpg.clone()
                },
                WireError::MissingField("GpgKeyExportP.export = 27"),
            ),
        ];
        for (key, error) in cases {
            assert_eq!(decode_p(&session_key(key)), Err(error));
        }
        assert!(decode_p(&session_key(gpg)).is_ok());
    }

    #[test]
    fn hash_values_are_128_lowercase_hex() {
        let rejected = |value: Vec<u8>| {
            decode_p(&control_p(ControlActionP {
                entered_rejected: Some(HashP {
                    method: Some(HashMethodP {
                        sha512: Some(true),
                        sha3: None,
                    }),
                    value: Some(value),
                }),
                ..ControlActionP::default()
            }))
        };
        assert!(rejected(b"0123456789abcdef".repeat(8)).is_ok());
        for bad in [
            Vec::new(),
            vec![b'a'; 127],
            vec![b'a'; 129],
            b"0123456789ABCDEF".repeat(8),
            [vec![b'g'], vec![b'a'; 127]].concat(),
            [vec![b'a'; 127], vec![0xe4]].concat(),
        ] {
            assert_eq!(rejected(bad), Err(WireError::HashValue));
        }
        let last = |value: Vec<u8>| {
            decode_p(&control_p(ControlActionP {
                entered_rejected: Some(hash_p(&hex_hash(b'a'))),
                entered_last_accepted: Some(HashP {
                    method: Some(HashMethodP {
                        sha512: Some(true),
                        sha3: None,
                    }),
                    value: Some(value),
                }),
                ..ControlActionP::default()
            }))
        };
        assert_eq!(last(vec![b'A'; 128]), Err(WireError::HashValue));
        let mut no_value = hash_p(&hex_hash(b'a'));
        no_value.value = None;
        assert_eq!(
            decode_p(&control_p(ControlActionP {
                entered_rejected: Some(no_value),
                ..ControlActionP::default()
            })),
            Err(WireError::MissingField("HashP.value = 32"))
        );
    }

    #[test]
    fn elapsed_times_are_finite() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                decode_message(&encode_message(&seen(b"x", x))),
                Err(WireError::ElapsedTime(_))
            ));
        }
        round_trip(&seen(b"x", -0.0));
    }

    #[test]
    fn truncated_and_malformed_bytes_are_refused() {
        let bytes = encode_message(&developer_control(
            ControlAction::SessionKey(
                PerhapsSigned::GpgSigned(PublicKey(vec![1; 32]), b"s".to_vec(), b"e".to_vec()),
                b"1".to_vec(),
            ),
            Signature::Ed25519(vec![6; 64]),
        ));
        for end in 0..bytes.len() {
            assert!(decode_message(&bytes[..end]).is_err(), "prefix of {end}");
        }
        assert!(matches!(
            decode_message(&[0xf2, 0x01, 0x05, 0x22]),
            Err(WireError::Decode(_))
        ));
        // Field 29 with the varint wire type.
        assert!(matches!(
            decode_message(&[0xe8, 0x01, 0x01]),
            Err(WireError::Decode(_))
        ));
        assert!(matches!(
            decode_message(&[0xff; 16]),
            Err(WireError::Decode(_))
        ));
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            WireError::MissingField("EnteredP.echo_data = 3").to_string(),
            "required field EnteredP.echo_data = 3 is missing"
        );
        assert_eq!(
            WireError::AmbiguousConstructor("ControlActionP").to_string(),
            "ControlActionP has fields of more than one constructor"
        );
    }
}
