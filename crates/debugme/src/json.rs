//! The JSON log format: one [`LogLine`] per line, as the real debug-me writes and reads it.
//!
//! Bytes are `{"v":"text"}` when valid UTF-8, else `{"b64":"…"}`; sum types are one-key objects
//! named after the constructor; constructors with several fields are arrays. Key order is
//! ignored on input; writers emit only the protocol's keys. The JSON text is never hashed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::model::{
    Activity, AnyMessage, Control, ControlAction, Entered, Hash, HashMethod, LogLine, Message,
    PerhapsSigned, PublicKey, Seen, Signature, Val,
};

/// Why a log line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    Syntax(String),
    /// JSON, but not the shape of a log line; the path says where.
    #[error("{path}: expected {expected}")]
    Shape {
        /// Where in the line, as `loggedMessage.User.ActivityMessage.activity`.
        path: String,
        /// What should have been there.
        expected: &'static str,
    },
}

type Result<T> = std::result::Result<T, JsonError>;

/// Reads one log line.
pub fn decode_line(line: &str) -> Result<LogLine> {
    let value: Value = serde_json::from_str(line).map_err(|e| JsonError::Syntax(e.to_string()))?;
    let at = At::root();
    let object = at.object(&value)?;
    let hash = match At::optional_field(object, "loggedHash") {
        Value::Null => None,
        value => Some(hash(&at.key("loggedHash"), value)?),
    };
    let timestamp = at
        .field(object, "loggedTimestamp")?
        .as_f64()
        .ok_or_else(|| at.key("loggedTimestamp").expected("a number"))?;
    let message = any_message(&at.key("loggedMessage"), at.field(object, "loggedMessage")?)?;
    Ok(LogLine {
        message,
        hash,
        timestamp,
    })
}

/// Writes one log line (without the newline), keys in the order the real program uses.
pub fn encode_line(line: &LogLine) -> String {
    let mut object = Map::new();
    object.insert("loggedMessage".into(), any_message_json(&line.message));
    object.insert("loggedTimestamp".into(), number(line.timestamp));
    object.insert(
        "loggedHash".into(),
        line.hash.as_ref().map_or(Value::Null, hash_json),
    );
    Value::Object(object).to_string()
}

/// A path into the JSON value, for error messages.
struct At(String);

impl At {
    fn root() -> Self {
        At(String::new())
    }

    fn key(&self, key: &str) -> At {
        if self.0.is_empty() {
            At(key.to_owned())
        } else {
            At(format!("{}.{key}", self.0))
        }
    }

    fn index(&self, i: usize) -> At {
        At(format!("{}[{i}]", self.0))
    }

    fn expected(&self, expected: &'static str) -> JsonError {
        JsonError::Shape {
            path: if self.0.is_empty() {
                "line".to_owned()
            } else {
                self.0.clone()
            },
            expected,
        }
    }

    fn object<'v>(&self, value: &'v Value) -> Result<&'v Map<String, Value>> {
        value.as_object().ok_or_else(|| self.expected("an object"))
    }

    fn field<'v>(&self, object: &'v Map<String, Value>, key: &str) -> Result<&'v Value> {
        object
            .get(key)
            .ok_or_else(|| self.key(key).expected("this key"))
    }

    /// An optional field: absent reads as `null`, as debug-me (aeson) reads its `Maybe` fields.
    fn optional_field<'v>(object: &'v Map<String, Value>, key: &str) -> &'v Value {
        static NULL: Value = Value::Null;
        object.get(key).unwrap_or(&NULL)
    }

    /// The constructor of a one-key object and its contents.
    fn tagged<'v>(&self, value: &'v Value, tags: &'static str) -> Result<(&'v str, &'v Value)> {
        let object = self.object(value)?;
        match object.iter().next() {
            Some((tag, inner)) if object.len() == 1 => Ok((tag.as_str(), inner)),
            _ => Err(self.expected(tags)),
        }
    }

    fn array<'v>(&self, value: &'v Value, len: usize) -> Result<&'v [Value]> {
        match value.as_array() {
            Some(items) if items.len() == len => Ok(items),
            _ => Err(self.expected(match len {
                2 => "an array of 2",
                _ => "an array of 3",
            })),
        }
    }
}

fn val(at: &At, value: &Value) -> Result<Val> {
    let object = at.object(value)?;
    if let Some(text) = object.get("v") {
        return text
            .as_str()
            .map(|t| t.as_bytes().to_vec())
            .ok_or_else(|| at.key("v").expected("a string"));
    }
    let b64 = object
        .get("b64")
        .and_then(Value::as_str)
        .ok_or_else(|| at.expected("{\"v\": text} or {\"b64\": base64}"))?;
    STANDARD
        .decode(b64)
        .map_err(|_| at.key("b64").expected("standard padded base64"))
}

fn val_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!({ "v": text }),
        Err(_) => json!({ "b64": STANDARD.encode(bytes) }),
    }
}

fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn hash(at: &At, value: &Value) -> Result<Hash> {
    let object = at.object(value)?;
    let method = match at.field(object, "hashMethod")?.as_str() {
        Some("SHA512") => HashMethod::Sha512,
        Some("SHA3") => HashMethod::Sha3,
        _ => return Err(at.key("hashMethod").expected("\"SHA512\" or \"SHA3\"")),
    };
    let value = val(&at.key("hashValue"), at.field(object, "hashValue")?)?;
    Ok(Hash { method, value })
}

fn hash_json(hash: &Hash) -> Value {
    let method = match hash.method {
        HashMethod::Sha512 => "SHA512",
        HashMethod::Sha3 => "SHA3",
    };
    json!({ "hashMethod": method, "hashValue": val_json(&hash.value) })
}

fn optional_hash(at: &At, value: &Value) -> Result<Option<Hash>> {
    match value {
        Value::Null => Ok(None),
        value => hash(at, value).map(Some),
    }
}

fn optional_hash_json(hash: Option<&Hash>) -> Value {
    hash.map_or(Value::Null, hash_json)
}

fn signature(at: &At, value: &Value) -> Result<Signature> {
    match at.tagged(
        value,
        "{\"Ed25519Signature\": …} or {\"OtherSignature\": …}",
    )? {
        ("Ed25519Signature", inner) => {
            Ok(Signature::Ed25519(val(&at.key("Ed25519Signature"), inner)?))
        }
        ("OtherSignature", inner) => Ok(Signature::Other(val(&at.key("OtherSignature"), inner)?)),
        _ => Err(at.expected("{\"Ed25519Signature\": …} or {\"OtherSignature\": …}")),
    }
}

fn signature_json(signature: &Signature) -> Value {
    match signature {
        Signature::Ed25519(s) => json!({ "Ed25519Signature": val_json(s) }),
        Signature::Other(s) => json!({ "OtherSignature": val_json(s) }),
    }
}

fn perhaps_signed(at: &At, value: &Value) -> Result<PerhapsSigned> {
    const TAGS: &str = "{\"UnSigned\": …} or {\"GpgSigned\": […]}";
    match at.tagged(value, TAGS)? {
        ("UnSigned", inner) => Ok(PerhapsSigned::UnSigned(PublicKey(val(
            &at.key("UnSigned"),
            inner,
        )?))),
        ("GpgSigned", inner) => {
            let at = at.key("GpgSigned");
            let items = at.array(inner, 3)?;
            Ok(PerhapsSigned::GpgSigned(
                PublicKey(val(&at.index(0), &items[0])?),
                val(&at.index(1), &items[1])?,
                val(&at.index(2), &items[2])?,
            ))
        }
        _ => Err(at.expected(TAGS)),
    }
}

fn perhaps_signed_json(key: &PerhapsSigned) -> Value {
    match key {
        PerhapsSigned::UnSigned(key) => json!({ "UnSigned": val_json(&key.0) }),
        PerhapsSigned::GpgSigned(key, sig, export) => json!({
            "GpgSigned": [val_json(&key.0), val_json(sig), val_json(export)]
        }),
    }
}

fn control_action(at: &At, value: &Value) -> Result<ControlAction> {
    const TAGS: &str = "a control action (EnteredRejected, SessionKey, SessionKeyAccepted, \
                        SessionKeyRejected or ChatMessage)";
    let (tag, inner) = at.tagged(value, TAGS)?;
    let at = at.key(tag);
    match tag {
        "EnteredRejected" => {
            let object = at.object(inner)?;
            Ok(ControlAction::EnteredRejected {
                entered_rejected: hash(
                    &at.key("enteredRejected"),
                    at.field(object, "enteredRejected")?,
                )?,
                entered_last_accepted: optional_hash(
                    &at.key("enteredLastAccepted"),
                    At::optional_field(object, "enteredLastAccepted"),
                )?,
            })
        }
        "SessionKey" => {
            let items = at.array(inner, 2)?;
            Ok(ControlAction::SessionKey(
                perhaps_signed(&at.index(0), &items[0])?,
                val(&at.index(1), &items[1])?,
            ))
        }
        "SessionKeyAccepted" => Ok(ControlAction::SessionKeyAccepted(PublicKey(val(
            &at, inner,
        )?))),
        "SessionKeyRejected" => Ok(ControlAction::SessionKeyRejected(PublicKey(val(
            &at, inner,
        )?))),
        "ChatMessage" => {
            let items = at.array(inner, 2)?;
            Ok(ControlAction::ChatMessage(
                val(&at.index(0), &items[0])?,
                val(&at.index(1), &items[1])?,
            ))
        }
        _ => Err(at.expected(TAGS)),
    }
}

fn control_action_json(action: &ControlAction) -> Value {
    match action {
        ControlAction::EnteredRejected {
            entered_rejected,
            entered_last_accepted,
        } => json!({ "EnteredRejected": {
            "enteredRejected": hash_json(entered_rejected),
            "enteredLastAccepted": optional_hash_json(entered_last_accepted.as_ref()),
        }}),
        ControlAction::SessionKey(key, version) => {
            json!({ "SessionKey": [perhaps_signed_json(key), val_json(version)] })
        }
        ControlAction::SessionKeyAccepted(key) => json!({ "SessionKeyAccepted": val_json(&key.0) }),
        ControlAction::SessionKeyRejected(key) => json!({ "SessionKeyRejected": val_json(&key.0) }),
        ControlAction::ChatMessage(sender, text) => {
            json!({ "ChatMessage": [val_json(sender), val_json(text)] })
        }
    }
}

fn control(at: &At, value: &Value) -> Result<Control> {
    let object = at.object(value)?;
    Ok(Control {
        control: control_action(&at.key("control"), at.field(object, "control")?)?,
        signature: signature(
            &at.key("controlSignature"),
            at.field(object, "controlSignature")?,
        )?,
    })
}

fn control_json(control: &Control) -> Value {
    json!({
        "control": control_action_json(&control.control),
        "controlSignature": signature_json(&control.signature),
    })
}

/// How a Seen or an Entered reads and writes itself.
trait ActivityJson: Sized {
    fn read(at: &At, value: &Value) -> Result<Self>;
    fn write(&self) -> Value;
}

impl ActivityJson for Seen {
    fn read(at: &At, value: &Value) -> Result<Self> {
        let object = at.object(value)?;
        Ok(Seen {
            seen_data: val(&at.key("seenData"), at.field(object, "seenData")?)?,
        })
    }

    fn write(&self) -> Value {
        json!({ "seenData": val_json(&self.seen_data) })
    }
}

impl ActivityJson for Entered {
    fn read(at: &At, value: &Value) -> Result<Self> {
        let object = at.object(value)?;
        Ok(Entered {
            entered_data: val(&at.key("enteredData"), at.field(object, "enteredData")?)?,
            echo_data: val(&at.key("echoData"), at.field(object, "echoData")?)?,
        })
    }

    fn write(&self) -> Value {
        json!({
            "enteredData": val_json(&self.entered_data),
            "echoData": val_json(&self.echo_data),
        })
    }
}

fn message<A: ActivityJson>(at: &At, value: &Value) -> Result<Message<A>> {
    const TAGS: &str = "{\"ActivityMessage\": …} or {\"ControlMessage\": …}";
    match at.tagged(value, TAGS)? {
        ("ActivityMessage", inner) => {
            let at = at.key("ActivityMessage");
            let object = at.object(inner)?;
            Ok(Message::Activity(Activity {
                activity: A::read(&at.key("activity"), at.field(object, "activity")?)?,
                prev_activity: optional_hash(
                    &at.key("prevActivity"),
                    At::optional_field(object, "prevActivity"),
                )?,
                prev_entered: optional_hash(
                    &at.key("prevEntered"),
                    At::optional_field(object, "prevEntered"),
                )?,
                elapsed_time: at
                    .field(object, "elapsedTime")?
                    .as_f64()
                    .ok_or_else(|| at.key("elapsedTime").expected("a number"))?,
                signature: signature(
                    &at.key("activitySignature"),
                    at.field(object, "activitySignature")?,
                )?,
            }))
        }
        ("ControlMessage", inner) => {
            Ok(Message::Control(control(&at.key("ControlMessage"), inner)?))
        }
        _ => Err(at.expected(TAGS)),
    }
}

fn message_json<A: ActivityJson>(message: &Message<A>) -> Value {
    match message {
        Message::Activity(activity) => json!({ "ActivityMessage": {
            "activity": activity.activity.write(),
            "prevActivity": optional_hash_json(activity.prev_activity.as_ref()),
            "prevEntered": optional_hash_json(activity.prev_entered.as_ref()),
            "elapsedTime": number(activity.elapsed_time),
            "activitySignature": signature_json(&activity.signature),
        }}),
        Message::Control(control) => json!({ "ControlMessage": control_json(control) }),
    }
}

fn any_message(at: &At, value: &Value) -> Result<AnyMessage> {
    const TAGS: &str = "{\"User\": …} or {\"Developer\": …}";
    match at.tagged(value, TAGS)? {
        ("User", inner) => Ok(AnyMessage::User(message(&at.key("User"), inner)?)),
        ("Developer", inner) => Ok(AnyMessage::Developer(message(&at.key("Developer"), inner)?)),
        _ => Err(at.expected(TAGS)),
    }
}

fn any_message_json(message: &AnyMessage) -> Value {
    match message {
        AnyMessage::User(message) => json!({ "User": message_json(message) }),
        AnyMessage::Developer(message) => json!({ "Developer": message_json(message) }),
    }
}
