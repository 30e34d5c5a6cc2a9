//! The user's side of a debug-me session (spec 6.1) as a state machine without I/O, so that
//! `kanava share` only moves bytes and the acceptance rules can be tested in memory.
//!
//! The machine owns the user's session key and the backlog. It turns PTY output into signed
//! Seen activities, and each message from a developer into [`UserAction`]s for the caller to
//! carry out in order: log, send, write to the PTY, ask for consent, show a chat line. Time
//! comes from the caller, as a reading of any monotonic clock.

use std::collections::VecDeque;
use std::time::Duration;

use crate::hash::{self, Hex};
use crate::model::{
    Activity, AnyMessage, Control, ControlAction, Entered, Hash, LogEntry, Message, PerhapsSigned,
    PublicKey, Seen, Signature, Val,
};
use crate::recover::{self, with_pointers};
use crate::sign::{self, SessionKey};

/// The first Seen of every session.
pub const SESSION_STARTED: &[u8] = b"** debug-me session started\r\n";

/// Older backlog entries kept besides the newest.
pub const BACKLOG_ENTRIES: usize = 1000;

/// The data the backlog keeps at most (the newest entry is kept whatever its size).
pub const BACKLOG_BYTES: usize = 16 * 1024 * 1024;

/// Accepted Entered remembered beyond the backlog, as candidates for `prevEntered`.
const RECENT_ENTERED: usize = 64;

/// Backlog entries an Entered may name as its `prevActivity` and be recognised: typeahead
/// names the entry before the output it expects as its echo.
const TYPEAHEAD_REACH: usize = 256;

/// Backlog entries tried after recently accepted Entered, to find a race's loser.
const RACE_REACH: usize = 8;

/// What the caller must do, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum UserAction {
    /// Send this message to the server (the wire codec drops its pointers).
    Send(AnyMessage),
    /// Append this to the user's log.
    Log(LogEntry),
    /// Write a developer's accepted keys to the PTY.
    WritePty(Val),
    /// Ask the user whether this developer may type; answer with [`User::consent`].
    AskConsent(ConsentRequest),
    /// Show a developer's chat line.
    Chat {
        /// The developer's name, as they sent it.
        sender: Val,
        /// The line.
        text: Val,
    },
}

/// A developer's GnuPG-signed session key, waiting for the user's decision. The caller checks
/// the GnuPG signature (spec 9) before asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRequest {
    /// The developer's session key.
    pub key: PublicKey,
    /// What the clearsigned statement must state: the 128 hex characters of `hash(key)`.
    pub statement: Hex,
    /// The clearsigned statement.
    pub gpg_signature: Val,
    /// The armoured export of the developer's GnuPG key.
    pub gpg_key_export: Val,
}

/// A call the session cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// [`User::consent`] for a key no developer asked consent for (or already answered).
    #[error("no developer with this session key is waiting for consent")]
    NotPending,
}

/// A backlog entry: an activity of the chain the user has accepted.
#[derive(Debug)]
struct Entry {
    hash: Hash,
    /// Its data: the output of a Seen, or the keys of an Entered.
    data: Val,
    seen: bool,
}

/// The user's session.
pub struct User {
    key: SessionKey,
    /// Own Seen and accepted Entered, newest first.
    backlog: VecDeque<Entry>,
    /// Developer keys the user accepted (V).
    accepted: Vec<PublicKey>,
    /// Developer keys waiting for consent.
    pending: Vec<PublicKey>,
    /// The last accepted Entered (E).
    last_entered: Option<Hash>,
    /// Recently accepted Entered, newest last, whether or not the backlog still has them.
    recent_entered: VecDeque<Hash>,
    /// When the previous Seen was made.
    last_seen_at: Duration,
}

impl User {
    /// Starts a session with the session key of the 32 random bytes `secret`, at `now` (a
    /// reading of a monotonic clock): the user's SessionKey and the start Seen, to send and log.
    pub fn start(secret: [u8; 32], now: Duration) -> (Self, Vec<UserAction>) {
        let key = SessionKey::from_secret(secret);
        let mut user = Self {
            backlog: VecDeque::new(),
            accepted: Vec::new(),
            pending: Vec::new(),
            last_entered: None,
            recent_entered: VecDeque::new(),
            last_seen_at: now,
            key,
        };
        let mut actions = user.control(ControlAction::SessionKey(
            PerhapsSigned::UnSigned(user.key.public()),
            b"1".to_vec(),
        ));
        actions.extend(user.seen(SESSION_STARTED, now));
        (user, actions)
    }

    /// The user's session key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    /// PTY output read at `now`: a Seen chained after the newest backlog entry, to send and
    /// log.
    pub fn seen(&mut self, data: &[u8], now: Duration) -> Vec<UserAction> {
        let mut activity = Activity {
            activity: Seen {
                seen_data: data.to_vec(),
            },
            prev_activity: self.backlog.front().map(|entry| entry.hash.clone()),
            prev_entered: self.last_entered.clone(),
            elapsed_time: now.saturating_sub(self.last_seen_at).as_secs_f64(),
            signature: Signature::Ed25519(Vec::new()),
        };
        self.key.sign_activity(&mut activity);
        self.last_seen_at = now;
        let chain = hash::activity(&activity);
        self.push(Entry {
            hash: chain.clone(),
            data: data.to_vec(),
            seen: true,
        });
        let message = AnyMessage::User(Message::Activity(activity));
        vec![
            UserAction::Send(message.clone()),
            UserAction::Log(LogEntry {
                message,
                hash: Some(chain),
            }),
        ]
    }

    /// The last Seen, once the shell exited with `status` (`-9` after SIGKILL).
    pub fn end(&mut self, status: i32, now: Duration) -> Vec<UserAction> {
        self.seen(
            format!("\r\n** debug-me session ended ({status})\r\n").as_bytes(),
            now,
        )
    }

    /// A chat line from the user.
    pub fn chat(&mut self, sender: &[u8], text: &[u8]) -> Vec<UserAction> {
        self.control(ControlAction::ChatMessage(sender.to_vec(), text.to_vec()))
    }

    /// The user's answer about a developer's key that [`UserAction::AskConsent`] asked about.
    /// On yes the key may type from now on.
    pub fn consent(&mut self, key: &PublicKey, yes: bool) -> Result<Vec<UserAction>, UserError> {
        let index = self
            .pending
            .iter()
            .position(|pending| pending == key)
            .ok_or(UserError::NotPending)?;
        self.pending.remove(index);
        Ok(self.answer(key, yes))
    }

    /// A message from the server. Only developers' messages count: a session key goes to
    /// consent (or is refused when unsigned); anything else must be signed by an accepted key,
    /// or it is dropped without a trace.
    pub fn receive(&mut self, message: AnyMessage) -> Vec<UserAction> {
        match message {
            AnyMessage::Developer(Message::Control(control)) => self.developer_control(control),
            AnyMessage::Developer(Message::Activity(entered)) => self.entered(&entered),
            AnyMessage::User(_) => Vec::new(),
        }
    }

    fn developer_control(&mut self, control: Control) -> Vec<UserAction> {
        if let ControlAction::SessionKey(key, _) = &control.control {
            if !sign::control_verifies(key.key(), &control) {
                return Vec::new();
            }
            let mut actions = vec![developer_log(Message::Control(control.clone()), None)];
            match key {
                PerhapsSigned::UnSigned(key) => actions.extend(self.answer(key, false)),
                PerhapsSigned::GpgSigned(key, _, _) if self.accepted.contains(key) => {}
                PerhapsSigned::GpgSigned(key, gpg_signature, gpg_key_export) => {
                    if !self.pending.contains(key) {
                        self.pending.push(key.clone());
                    }
                    actions.push(UserAction::AskConsent(ConsentRequest {
                        key: key.clone(),
                        statement: hash::public_key(key),
                        gpg_signature: gpg_signature.clone(),
                        gpg_key_export: gpg_key_export.clone(),
                    }));
                }
            }
            return actions;
        }
        if !self
            .accepted
            .iter()
            .any(|key| sign::control_verifies(key, &control))
        {
            return Vec::new();
        }
        let chat = match &control.control {
            ControlAction::ChatMessage(sender, text) => Some(UserAction::Chat {
                sender: sender.clone(),
                text: text.clone(),
            }),
            _ => None,
        };
        std::iter::once(developer_log(Message::Control(control), None))
            .chain(chat)
            .collect()
    }

    fn entered(&mut self, entered: &Activity<Entered>) -> Vec<UserAction> {
        let Some(pointers) = self.recover(entered) else {
            return Vec::new();
        };
        let entered = with_pointers(entered, &pointers);
        let chain = hash::activity(&entered);
        if let Some(at) = entered.prev_activity.as_ref().and_then(|pa| {
            self.backlog
                .iter()
                .position(|entry| entry.seen && &entry.hash == pa)
        }) {
            self.backlog.truncate(at + 1);
        }
        if self.is_legal(&entered) {
            self.push(Entry {
                hash: chain.clone(),
                data: entered.activity.entered_data.clone(),
                seen: false,
            });
            self.last_entered = Some(chain.clone());
            self.recent_entered.push_back(chain.clone());
            if self.recent_entered.len() > RECENT_ENTERED {
                self.recent_entered.pop_front();
            }
            let keys = entered.activity.entered_data.clone();
            return vec![
                developer_log(Message::Activity(entered), Some(chain)),
                UserAction::WritePty(keys),
            ];
        }
        let rejection = ControlAction::EnteredRejected {
            entered_rejected: chain.clone(),
            entered_last_accepted: self.last_entered.clone(),
        };
        // Send the rejection, then log the Entered and the rejection.
        let mut actions = self.control(rejection);
        actions.insert(1, developer_log(Message::Activity(entered), Some(chain)));
        actions
    }

    /// The pointers an accepted key signed the Entered with, tried among the last accepted
    /// Entered and the backlog: the newest entry with E first, then every pair. A `prevEntered`
    /// is only ever absent or an Entered, so the backlog's Seen are not tried there; recently
    /// accepted Entered the backlog dropped are. They go beyond spec 6.1's candidates, so that
    /// a developer who lost a race gets its rejection: the winner's key drops the previous E
    /// from the backlog, and the loser's key names it.
    fn recover(&self, entered: &Activity<Entered>) -> Option<recover::Pointers> {
        // A legal Entered names E, after one of the newest entries (typeahead reaches back as
        // far as its echo, a few outputs); those pairs come first. Then, so that the loser of a
        // race gets its rejection, the newest entries after recently accepted Entered.
        let mut activities: Vec<Option<Hash>> = self
            .backlog
            .iter()
            .take(TYPEAHEAD_REACH)
            .map(|entry| Some(entry.hash.clone()))
            .collect();
        activities.push(self.last_entered.clone());
        activities.push(None);
        let legal = [self.last_entered.clone(), None];
        let mut entered_candidates = legal.to_vec();
        entered_candidates.extend(self.recent_entered.iter().rev().cloned().map(Some));
        let newest = &activities[..activities.len().min(RACE_REACH)];
        recover::first_signed(
            entered,
            recover::pairs(&activities, &legal).chain(recover::pairs(newest, &entered_candidates)),
            &self.accepted,
        )
    }

    /// Spec 6.1 step 3: chained after E, and after the newest entry or (typeahead) after an
    /// entry whose later output the developer expected as echo.
    fn is_legal(&self, entered: &Activity<Entered>) -> bool {
        let Some(pa) = &entered.prev_activity else {
            return false;
        };
        if entered.prev_entered != self.last_entered {
            return false;
        }
        if self
            .backlog
            .front()
            .is_some_and(|newest| &newest.hash == pa)
        {
            return true;
        }
        let echo = &entered.activity.echo_data;
        if echo.is_empty() {
            return false;
        }
        let Some(at) = self.backlog.iter().position(|entry| &entry.hash == pa) else {
            return false;
        };
        let mut since = Vec::with_capacity(echo.len());
        for entry in self.backlog.range(..at).rev().filter(|entry| entry.seen) {
            since.extend_from_slice(&entry.data);
            if since.len() > echo.len() {
                return false;
            }
        }
        &since == echo
    }

    /// Pushes the newest entry and keeps at most [`BACKLOG_ENTRIES`] older ones, as long as
    /// all the data kept stays within [`BACKLOG_BYTES`].
    fn push(&mut self, entry: Entry) {
        let mut bytes = entry.data.len();
        self.backlog.push_front(entry);
        let keep = self
            .backlog
            .iter()
            .skip(1)
            .take(BACKLOG_ENTRIES)
            .take_while(|entry| {
                bytes += entry.data.len();
                bytes <= BACKLOG_BYTES
            })
            .count();
        self.backlog.truncate(keep + 1);
    }

    /// A control signed by the user's key, to send and log.
    fn control(&mut self, action: ControlAction) -> Vec<UserAction> {
        let mut control = Control {
            control: action,
            signature: Signature::Ed25519(Vec::new()),
        };
        self.key.sign_control(&mut control);
        let message = AnyMessage::User(Message::Control(control));
        vec![
            UserAction::Send(message.clone()),
            UserAction::Log(LogEntry {
                message,
                hash: None,
            }),
        ]
    }

    fn answer(&mut self, key: &PublicKey, yes: bool) -> Vec<UserAction> {
        if yes {
            if !self.accepted.contains(key) {
                self.accepted.push(key.clone());
            }
            self.control(ControlAction::SessionKeyAccepted(key.clone()))
        } else {
            self.control(ControlAction::SessionKeyRejected(key.clone()))
        }
    }
}

fn developer_log(message: Message<Entered>, hash: Option<Hash>) -> UserAction {
    UserAction::Log(LogEntry {
        message: AnyMessage::Developer(message),
        hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{decode_line, encode_line};
    use crate::recover::Pointers;
    use crate::verify::{GpgCheck, verify};

    const T0: Duration = Duration::from_secs(100);

    /// Takes any GnuPG statement: the user machine leaves that check to its caller.
    struct AnyGpg;

    impl GpgCheck for AnyGpg {
        fn check(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> Result<String, String> {
            Ok("Dev <dev@example.org>".into())
        }
    }

    /// The log the actions ask for, checked by this crate's verifier.
    fn logged(actions: &[UserAction]) -> Vec<LogEntry> {
        actions
            .iter()
            .filter_map(|action| match action {
                UserAction::Log(entry) => Some(entry.clone()),
                _ => None,
            })
            .collect()
    }

    fn assert_verifies(log: &[LogEntry]) {
        let text: String = log
            .iter()
            .map(|entry| encode_line(&entry.clone().at(1.8e9)) + "\n")
            .collect();
        verify(&text, &mut AnyGpg).unwrap();
    }

    fn sent(actions: &[UserAction]) -> Vec<AnyMessage> {
        actions
            .iter()
            .filter_map(|action| match action {
                UserAction::Send(message) => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn key_control(key: &SessionKey, signed: bool) -> AnyMessage {
        let perhaps = if signed {
            PerhapsSigned::GpgSigned(key.public(), b"statement".to_vec(), b"export".to_vec())
        } else {
            PerhapsSigned::UnSigned(key.public())
        };
        let mut control = Control {
            control: ControlAction::SessionKey(perhaps, b"1".to_vec()),
            signature: Signature::Ed25519(Vec::new()),
        };
        key.sign_control(&mut control);
        AnyMessage::Developer(Message::Control(control))
    }

    /// An Entered signed by `key` with these pointers, as the wire carries it (no pointers).
    fn entered(key: &SessionKey, keys: &[u8], echo: &[u8], pointers: Pointers) -> AnyMessage {
        let mut entered = Activity {
            activity: Entered {
                entered_data: keys.to_vec(),
                echo_data: echo.to_vec(),
            },
            prev_activity: pointers.0,
            prev_entered: pointers.1,
            elapsed_time: 0.25,
            signature: Signature::Ed25519(Vec::new()),
        };
        key.sign_activity(&mut entered);
        AnyMessage::Developer(Message::Activity(with_pointers(&entered, &(None, None))))
    }

    /// A user with an accepted developer key, and the log so far.
    fn with_developer() -> (User, SessionKey, Vec<LogEntry>) {
        let (mut user, actions) = User::start([1; 32], T0);
        let mut log = logged(&actions);
        let developer = SessionKey::from_secret([2; 32]);
        let actions = user.receive(key_control(&developer, true));
        log.extend(logged(&actions));
        let actions = user.consent(&developer.public(), true).unwrap();
        log.extend(logged(&actions));
        (user, developer, log)
    }

    fn newest(user: &User) -> Option<Hash> {
        user.backlog.front().map(|entry| entry.hash.clone())
    }

    fn control_sent(actions: &[UserAction]) -> Option<ControlAction> {
        sent(actions).into_iter().find_map(|message| match message {
            AnyMessage::User(Message::Control(control)) => Some(control.control),
            _ => None,
        })
    }

    #[test]
    fn a_session_starts_with_the_key_and_the_start_seen_and_ends_with_the_status() {
        let (mut user, actions) = User::start([1; 32], T0);
        let messages = sent(&actions);
        assert_eq!(messages.len(), 2);
        let AnyMessage::User(Message::Control(key)) = &messages[0] else {
            panic!("{messages:?}")
        };
        assert_eq!(
            key.control,
            ControlAction::SessionKey(PerhapsSigned::UnSigned(user.public_key()), b"1".to_vec())
        );
        let AnyMessage::User(Message::Activity(start)) = &messages[1] else {
            panic!("{messages:?}")
        };
        assert_eq!(start.activity.seen_data, SESSION_STARTED);
        assert_eq!((&start.prev_activity, &start.prev_entered), (&None, &None));
        assert_eq!(start.elapsed_time, 0.0);
        assert!(sign::activity_verifies(&user.public_key(), start));
        let mut log = logged(&actions);
        let output = user.seen(b"$ ", T0 + Duration::from_millis(1500));
        let AnyMessage::User(Message::Activity(prompt)) = &sent(&output)[0] else {
            panic!()
        };
        assert_eq!(prompt.prev_activity, Some(hash::activity(start)));
        assert_eq!(prompt.elapsed_time, 1.5);
        log.extend(logged(&output));
        let end = user.end(-9, T0 + Duration::from_secs(2));
        let AnyMessage::User(Message::Activity(end_seen)) = &sent(&end)[0] else {
            panic!()
        };
        assert_eq!(
            end_seen.activity.seen_data,
            b"\r\n** debug-me session ended (-9)\r\n"
        );
        assert_eq!(end_seen.elapsed_time, 0.5);
        log.extend(logged(&end));
        assert_eq!(log.len(), 4);
        assert_verifies(&log);
    }

    #[test]
    fn an_unsigned_developer_key_is_rejected_at_once() {
        let (mut user, _) = User::start([1; 32], T0);
        let developer = SessionKey::from_secret([2; 32]);
        let actions = user.receive(key_control(&developer, false));
        assert!(matches!(actions[0], UserAction::Log(_)));
        assert_eq!(
            control_sent(&actions),
            Some(ControlAction::SessionKeyRejected(developer.public()))
        );
        assert_eq!(actions.len(), 3);
        assert_eq!(
            user.consent(&developer.public(), true),
            Err(UserError::NotPending)
        );
        // Its keys are dropped without a trace.
        let start = newest(&user);
        assert_eq!(
            user.receive(entered(&developer, b"x", b"", (start, None))),
            []
        );
    }

    #[test]
    fn a_real_gpg_signed_key_asks_for_consent_once() {
        let text = include_str!("../testdata/appendix-b-controls.log");
        let line = decode_line(text.lines().nth(1).unwrap()).unwrap();
        let (mut user, _) = User::start([1; 32], T0);
        let actions = user.receive(line.message.clone());
        assert_eq!(actions.len(), 2, "{actions:?}");
        let UserAction::AskConsent(request) = &actions[1] else {
            panic!("{actions:?}")
        };
        assert!(request.statement.starts_with(b"859ad190"));
        let statement = String::from_utf8_lossy(&request.gpg_signature);
        assert!(statement.contains(std::str::from_utf8(&request.statement).unwrap()));
        assert!(
            String::from_utf8_lossy(&request.gpg_key_export)
                .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        );
        let answer = user.consent(&request.key, true).unwrap();
        assert_eq!(
            control_sent(&answer),
            Some(ControlAction::SessionKeyAccepted(request.key.clone()))
        );
        assert_eq!(user.accepted, std::slice::from_ref(&request.key));
        assert_eq!(user.consent(&request.key, true), Err(UserError::NotPending));
        // Sent again once accepted, it is only logged.
        assert_eq!(user.receive(line.message).len(), 1);
    }

    #[test]
    fn messages_no_accepted_key_signed_are_dropped_without_a_trace() {
        let (mut user, developer, _) = with_developer();
        let stranger = SessionKey::from_secret([3; 32]);
        let start = newest(&user);
        assert_eq!(
            user.receive(entered(
                &stranger,
                b"rm -rf /\r",
                b"",
                (start.clone(), None)
            )),
            []
        );
        let mut chat = Control {
            control: ControlAction::ChatMessage(b"eve".to_vec(), b"hi".to_vec()),
            signature: Signature::Ed25519(Vec::new()),
        };
        stranger.sign_control(&mut chat);
        assert_eq!(
            user.receive(AnyMessage::Developer(Message::Control(chat.clone()))),
            []
        );
        // A real Entered of another session, whose key this session never saw.
        let line = include_str!("../testdata/developer-entered.log");
        assert_eq!(user.receive(decode_line(line).unwrap().message), []);
        // Signed by the accepted developer, the same chat is shown.
        developer.sign_control(&mut chat);
        let shown = user.receive(AnyMessage::Developer(Message::Control(chat)));
        assert_eq!(
            shown[1],
            UserAction::Chat {
                sender: b"eve".to_vec(),
                text: b"hi".to_vec()
            }
        );
        assert_eq!(user.backlog.len(), 1);
        assert_eq!(user.last_entered, None);
    }

    #[test]
    fn entered_legality_follows_the_chain_and_the_echo() {
        let (mut user, developer, mut log) = with_developer();
        let start = newest(&user);
        // Chained after the newest entry and E: written to the PTY.
        let actions = user.receive(entered(&developer, b"l", b"", (start.clone(), None)));
        assert_eq!(actions[1], UserAction::WritePty(b"l".to_vec()));
        log.extend(logged(&actions));
        let e1 = newest(&user);
        assert_eq!(user.last_entered, e1);
        log.extend(logged(&user.seen(b"l", T0)));
        log.extend(logged(&user.seen(b"s", T0)));
        // Typeahead: after E1, expecting the echo "ls" that came since.
        let actions = user.receive(entered(&developer, b"\r", b"ls", (e1.clone(), e1.clone())));
        assert_eq!(actions[1], UserAction::WritePty(b"\r".to_vec()));
        log.extend(logged(&actions));
        let e2 = newest(&user);
        log.extend(logged(&user.seen(b"\r\n", T0)));
        // A wrong echo, an empty echo, a stale prevEntered, no prevActivity: rejected, signed
        // with the hash of the Entered and E.
        for (echo, pointers) in [
            (&b"l"[..], (e1.clone(), e2.clone())),
            (b"", (e1.clone(), e2.clone())),
            (b"", (newest(&user), e1.clone())),
            (b"", (None, e2.clone())),
        ] {
            let actions = user.receive(entered(&developer, b"x", echo, pointers));
            let Some(ControlAction::EnteredRejected {
                entered_rejected,
                entered_last_accepted,
            }) = control_sent(&actions)
            else {
                panic!("{actions:?}")
            };
            assert_eq!(entered_last_accepted, e2);
            assert!(
                matches!(&actions[..], [UserAction::Send(_), UserAction::Log(l), UserAction::Log(_)] if l.hash == Some(entered_rejected.clone()))
            );
            log.extend(logged(&actions));
        }
        assert_eq!(user.last_entered, e2);
        assert_verifies(&log);
    }

    #[test]
    fn the_backlog_drops_what_an_entered_has_seen_past_and_stays_bounded() {
        let (mut user, developer, _) = with_developer();
        for i in 0..5 {
            user.seen(format!("{i}").as_bytes(), T0);
        }
        let seen_2 = user.backlog[2].hash.clone();
        user.receive(entered(&developer, b"x", b"34", (Some(seen_2), None)));
        // The start Seen and outputs 0 to 2 are gone but the one named.
        assert_eq!(user.backlog.len(), 4);
        assert!(!user.backlog[0].seen);
        for i in 0..1100 {
            user.seen(format!("{i}").as_bytes(), T0);
        }
        assert_eq!(user.backlog.len(), BACKLOG_ENTRIES + 1);
        let big = vec![b'x'; BACKLOG_BYTES / 2];
        for _ in 0..3 {
            user.seen(&big, T0);
        }
        assert_eq!(user.backlog.len(), 2);
        user.seen(&vec![b'y'; BACKLOG_BYTES + 1], T0);
        assert_eq!(user.backlog.len(), 1);
    }
}
