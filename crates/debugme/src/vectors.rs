//! The specification's worked example and real logs as test vectors: decoding, hashing and
//! signatures must reproduce them exactly.

use crate::hash::{self, ActivityKind};
use crate::json::{decode_line, encode_line};
use crate::model::{AnyMessage, ControlAction, LogLine, Message, PerhapsSigned, PublicKey};
use crate::sign::{activity_verifies, control_verifies};

fn lines(text: &str) -> Vec<LogLine> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| decode_line(l).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

fn session_key(line: &LogLine) -> PublicKey {
    match &line.message {
        AnyMessage::User(Message::Control(c)) | AnyMessage::Developer(Message::Control(c)) => {
            match &c.control {
                ControlAction::SessionKey(key, _) => key.key().clone(),
                other => panic!("not a session key: {other:?}"),
            }
        }
        other => panic!("not a control: {other:?}"),
    }
}

#[test]
fn appendix_a_user_log_hashes_and_verifies() {
    let log = lines(include_str!("../testdata/appendix-a.log"));
    assert_eq!(log.len(), 3);
    let key = session_key(&log[0]);
    let AnyMessage::User(Message::Control(first)) = &log[0].message else {
        panic!()
    };
    assert!(control_verifies(&key, first));
    assert_eq!(
        &hex(&hash::control_signed(first)),
        &"af7259f15072a9aaf290381d32a472dd05aa17cf35284f8bdd1220a83e52b04d0e02f0b383d0df13513a100ea04ee2eca38b6e049e5c28b11c0fc3b05045504e"
    );
    for line in &log[1..] {
        let AnyMessage::User(Message::Activity(activity)) = &line.message else {
            panic!()
        };
        assert!(activity_verifies(&key, activity));
        assert_eq!(Some(hash::activity(activity)), line.hash, "loggedHash");
    }
    let AnyMessage::User(Message::Activity(second)) = &log[1].message else {
        panic!()
    };
    assert_eq!(
        hex(&hash::activity_signed(second)),
        "f89d5d61fd2abd94ad9ba10e2a363223761a8f035d12bdddbed4b4ec21edbd93593a30706e473048eaa695e820e757c2498ce686efb257378ad8dc3f4f6c5691"
    );
    assert_eq!(
        hex(&hash::signature(&second.signature)),
        "db8ed4e49c61886785407ad775bd47ea7ce0fb0aefcb92db71eadc30a9d939e1673183314633b6c1ee51753e41e16489fb21140793393db89539cf05789892ff"
    );
    let AnyMessage::User(Message::Activity(third)) = &log[2].message else {
        panic!()
    };
    assert_eq!(hash::show(third.elapsed_time), "7.21099e-4");
    assert!(hex(&hash::activity_signed(third)).starts_with("3531fb89b46e2722"));
    // A changed byte breaks the signature.
    let mut tampered = third.clone();
    tampered.activity.seen_data[5] ^= 1;
    assert!(!activity_verifies(&key, &tampered));
}

#[test]
fn a_developer_entered_hashes_as_logged() {
    let log = lines(include_str!("../testdata/developer-entered.log"));
    let AnyMessage::Developer(Message::Activity(entered)) = &log[0].message else {
        panic!()
    };
    assert_eq!(hash::show(entered.elapsed_time), "9.953997539");
    assert!(hex(&entered.activity.hash()).starts_with("804052db6cc0dbd2"));
    assert!(hex(&hash::activity_signed(entered)).starts_with("675d7de8e6c423ba"));
    assert_eq!(Some(hash::activity(entered)), log[0].hash);
}

#[test]
fn appendix_b_controls_verify_under_their_senders_keys() {
    let log = lines(include_str!("../testdata/appendix-b-controls.log"));
    let user = session_key(&log[0]);
    let developer = session_key(&log[1]);
    let expected = [
        ("4cdf9f0f92855c04", &user),
        (
            "2270624e48deb3e4abd1b91f30f3cd7cdba5900257e3938b9282099c09a9eee31310fe5f764d021f4dc298d3157e556b672810b66dec9ba01919c9d4d5a72346",
            &developer,
        ),
        ("5aef5e9247b8164a", &user),
        (
            "b08914929592b13a08fee04d2f89858e45c2450a2e2882c936503048b36045e6c2256ca1f9413ebc158a31282786de7171b213fcba31589fe9154c8492772bd2",
            &user,
        ),
        ("43852c70833f7b3e", &user),
    ];
    for (line, (signed, key)) in log.iter().zip(expected) {
        let (AnyMessage::User(Message::Control(control))
        | AnyMessage::Developer(Message::Control(control))) = &line.message
        else {
            panic!()
        };
        assert!(hex(&hash::control_signed(control)).starts_with(signed));
        assert!(control_verifies(key, control), "{line:?}");
        assert!(!control_verifies(
            if *key == user { &developer } else { &user },
            control
        ));
    }
    let AnyMessage::Developer(Message::Control(gpg)) = &log[1].message else {
        panic!()
    };
    let ControlAction::SessionKey(PerhapsSigned::GpgSigned(key, statement, _), _) = &gpg.control
    else {
        panic!()
    };
    // The clearsigned statement is the hex of hash(PublicKey).
    let statement = String::from_utf8_lossy(statement);
    assert!(statement.contains(hex(&hash::public_key(key))));
    assert!(hex(&hash::public_key(key)).starts_with("859ad190"));
}

#[test]
fn lines_survive_a_round_trip_through_the_writer() {
    for text in [
        include_str!("../testdata/appendix-a.log"),
        include_str!("../testdata/developer-entered.log"),
        include_str!("../testdata/appendix-b-controls.log"),
    ] {
        for line in lines(text) {
            let written = encode_line(&line);
            assert_eq!(decode_line(&written).unwrap(), line, "{written}");
            assert!(written.starts_with("{\"loggedMessage\":"));
        }
    }
}

#[test]
fn absent_optional_keys_read_as_null_and_unknown_keys_are_ignored_as_debug_me_reads_them() {
    for text in [
        include_str!("../testdata/appendix-a.log"),
        include_str!("../testdata/appendix-b-controls.log"),
    ] {
        for line in lines(text) {
            let mut value: serde_json::Value = serde_json::from_str(&encode_line(&line)).unwrap();
            let object = value.as_object_mut().unwrap();
            object.insert("comment".into(), "not debug-me's".into());
            if object["loggedHash"].is_null() {
                object.remove("loggedHash");
            }
            let message = object["loggedMessage"].as_object_mut().unwrap();
            let side = message
                .values_mut()
                .next()
                .unwrap()
                .as_object_mut()
                .unwrap();
            if let Some(activity) = side.get_mut("ActivityMessage") {
                let activity = activity.as_object_mut().unwrap();
                for key in ["prevActivity", "prevEntered"] {
                    if activity[key].is_null() {
                        activity.remove(key);
                    }
                }
            }
            assert_eq!(decode_line(&value.to_string()).unwrap(), line, "{value}");
        }
    }
}

#[test]
fn bad_lines_say_where_they_are_wrong() {
    use crate::json::JsonError;
    assert!(matches!(decode_line("{"), Err(JsonError::Syntax(_))));
    assert!(matches!(
        decode_line("\"\\xff\""),
        Err(JsonError::Syntax(_))
    ));
    let error = decode_line(r#"{"loggedMessage":{"User":{"ActivityMessage":{}}},"loggedTimestamp":1,"loggedHash":null}"#)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "loggedMessage.User.ActivityMessage.activity: expected this key"
    );
    let error =
        decode_line(r#"{"loggedMessage":{"Robot":{}},"loggedTimestamp":1,"loggedHash":null}"#)
            .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("loggedMessage: expected {\"User\""),
        "{error}"
    );
    let error = decode_line(r#"{"loggedMessage":{"User":{"ControlMessage":{"control":{"ChatMessage":[{"b64":"!!"},{"v":""}]},"controlSignature":{"Ed25519Signature":{"v":""}}}}},"loggedTimestamp":1,"loggedHash":null}"#)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "loggedMessage.User.ControlMessage.control.ChatMessage[0].b64: expected standard padded base64"
    );
}
