//! A synthetic session signed with fixed keys, richer than the real logs in the test data: a
//! developer's accepted and rejected Entered, a chat line that needs escaping, pauses of more
//! and less than a second, and UTF-8 characters split across Seen chunks. The same session is
//! written as the user logs it (pointers present) and as the server does (pointers null).

use kanava_debugme::hash;
use kanava_debugme::json::encode_line;
use kanava_debugme::model::{
    Activity, AnyMessage, Control, ControlAction, Entered, Hash, LogLine, Message, PerhapsSigned,
    Seen, Signature,
};
use kanava_debugme::sign::SessionKey;

/// The user's terminal output, all Seen data concatenated.
pub const OUTPUT: &[u8] =
    "** debug-me session started\r\n$ ls\r\ncafé €\r\n$ \x1b[1mbye\x1b[0m\r\n".as_bytes();

/// The chat line's text.
pub const CHAT: &str = "no \"thanks\" \\ bye";

struct Writer {
    user: SessionKey,
    developer: SessionKey,
    pointers: bool,
    lines: Vec<String>,
}

impl Writer {
    fn control(&mut self, from_user: bool, action: ControlAction) {
        let mut control = Control {
            control: action,
            signature: Signature::Ed25519(Vec::new()),
        };
        let message = if from_user {
            self.user.sign_control(&mut control);
            AnyMessage::User(Message::Control(control))
        } else {
            self.developer.sign_control(&mut control);
            AnyMessage::Developer(Message::Control(control))
        };
        self.push(message, None);
    }

    fn seen(
        &mut self,
        data: &[u8],
        elapsed: f64,
        pointers: (Option<&Hash>, Option<&Hash>),
    ) -> Hash {
        let mut activity = activity(
            Seen {
                seen_data: data.to_vec(),
            },
            elapsed,
            pointers,
        );
        self.user.sign_activity(&mut activity);
        let chain = hash::activity(&activity);
        let logged = self.strip(&mut activity).unwrap_or_else(|| chain.clone());
        self.push(AnyMessage::User(Message::Activity(activity)), Some(logged));
        chain
    }

    fn entered(
        &mut self,
        data: &[u8],
        elapsed: f64,
        pointers: (Option<&Hash>, Option<&Hash>),
    ) -> Hash {
        let entered = Entered {
            entered_data: data.to_vec(),
            echo_data: Vec::new(),
        };
        let mut activity = activity(entered, elapsed, pointers);
        self.developer.sign_activity(&mut activity);
        let chain = hash::activity(&activity);
        let logged = self.strip(&mut activity).unwrap_or_else(|| chain.clone());
        self.push(
            AnyMessage::Developer(Message::Activity(activity)),
            Some(logged),
        );
        chain
    }

    /// In the server's flavour, drops the pointers and returns the hash the server logs.
    fn strip<A: hash::ActivityKind>(&self, activity: &mut Activity<A>) -> Option<Hash> {
        if self.pointers {
            return None;
        }
        activity.prev_activity = None;
        activity.prev_entered = None;
        Some(hash::activity(activity))
    }

    fn push(&mut self, message: AnyMessage, hash: Option<Hash>) {
        let timestamp = 1.7e9 + self.lines.len() as f64;
        self.lines.push(encode_line(&LogLine {
            message,
            hash,
            timestamp,
        }));
    }
}

fn activity<A>(activity: A, elapsed: f64, pointers: (Option<&Hash>, Option<&Hash>)) -> Activity<A> {
    Activity {
        activity,
        prev_activity: pointers.0.cloned(),
        prev_entered: pointers.1.cloned(),
        elapsed_time: elapsed,
        signature: Signature::Ed25519(Vec::new()),
    }
}

/// The session's log: 14 lines, 7 Seen, 2 Entered (line 11's rejected), 5 controls. With
/// `pointers`, as the user writes it; without, as the server does.
pub fn session(pointers: bool) -> String {
    let mut w = Writer {
        user: SessionKey::from_secret([1; 32]),
        developer: SessionKey::from_secret([2; 32]),
        pointers,
        lines: Vec::new(),
    };
    let user_key = PerhapsSigned::UnSigned(w.user.public());
    let developer_key = w.developer.public();
    w.control(true, ControlAction::SessionKey(user_key, b"1".to_vec()));
    let h2 = w.seen(b"** debug-me session started\r\n", 0.0, (None, None));
    w.control(
        false,
        ControlAction::SessionKey(
            PerhapsSigned::UnSigned(developer_key.clone()),
            b"1".to_vec(),
        ),
    );
    w.control(true, ControlAction::SessionKeyAccepted(developer_key));
    let h5 = w.seen(b"$ ", 1.5, (Some(&h2), None));
    let h6 = w.entered(b"ls\r", 2.0, (Some(&h5), None));
    let h7 = w.seen(b"ls\r\n", 0.2, (Some(&h6), Some(&h6)));
    let h8 = w.seen(b"caf\xc3", 0.3, (Some(&h7), Some(&h6)));
    let h9 = w.seen(b"\xa9 \xe2\x82", 1.0, (Some(&h8), Some(&h6)));
    let h10 = w.seen(b"\xac\r\n$ ", 0.1, (Some(&h9), Some(&h6)));
    let h11 = w.entered(b"rm -rf /\r", 3.0, (Some(&h10), Some(&h6)));
    w.control(
        true,
        ControlAction::EnteredRejected {
            entered_rejected: h11,
            entered_last_accepted: Some(h6.clone()),
        },
    );
    w.control(
        true,
        ControlAction::ChatMessage(b"user".to_vec(), CHAT.as_bytes().to_vec()),
    );
    w.seen(b"\x1b[1mbye\x1b[0m\r\n", 2.5, (Some(&h10), Some(&h6)));
    let mut text = w.lines.join("\n");
    text.push('\n');
    text
}

/// A GnuPG check for logs that carry no GnuPG-signed key: any it is asked about fails.
pub(crate) struct NoGpg;

impl kanava_debugme::verify::GpgCheck for NoGpg {
    fn check(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> Result<String, String> {
        Err("no GnuPG keys in this log".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanava_debugme::verify::verify;

    #[test]
    fn both_flavours_verify() {
        for pointers in [true, false] {
            let report = verify(&session(pointers), &mut NoGpg).unwrap();
            assert_eq!(
                (report.lines, report.activities, report.controls),
                (14, 9, 5)
            );
        }
    }

    /// The end-to-end tests read the user's flavour from `testdata/synthetic.log`; set
    /// `KANAVA_REGENERATE_TESTDATA=1` to rewrite it after changing the session.
    #[test]
    fn the_committed_copy_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/synthetic.log");
        if std::env::var_os("KANAVA_REGENERATE_TESTDATA").is_some() {
            std::fs::write(path, session(true)).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            session(true),
            "run with KANAVA_REGENERATE_TESTDATA=1 to rewrite testdata/synthetic.log"
        );
    }
}
