//! Fuzzes the debug-me session roles, `kanava_debugme::user::User` and
//! `kanava_debugme::developer::Developer` (a developer, `Developer::new`, and a watcher,
//! `Developer::watcher`), on sequences of messages: an in-memory session whose relay keeps
//! order and strips pointers through the wire codec, driven by the input, into which the input
//! also injects frames of its own (decoded with `decode_frame`) and messages it signs with the
//! session's keys (the user's, the developer's, another developer's, a stranger's) and
//! pointers to any activity seen so far.
//!
//! The input is a list of records `op, len (u16 LE), payload` (the first 40 are run); each op
//! (modulo 12) reads its parameters from the payload's first bytes (missing ones are 0) and
//! takes the rest as data; signers, keys and kinds are taken modulo their number, and a pointer
//! `i` is the i-th newest activity seen (0: none):
//!
//! | op | does |
//! |----|------|
//! | 0 | the payload is a frame; an `L` frame's message is queued for all three (frames at the very start reach the developer and the watcher before the user's session start, so that a real session's frames can be followed from its start) |
//! | 1 | the user's program prints the data |
//! | 2 | the developer types the data |
//! | 3 | the developer sends its session key (GnuPG export: the data) |
//! | 4 | `[to, n]`: delivers n (0: all) queued messages to the user, developer, watcher or all |
//! | 5 | `[answer]`: the user answers the oldest consent question (bit 0: yes; bit 1: about a key nobody offered) |
//! | 6 | `[signer, pa, pe, split]`: a signed Entered, keys and echo split from the data |
//! | 7 | `[signer, pa, pe]`: a signed Seen of the data |
//! | 8 | `[signer, kind, a, b]`: a signed control (kind: session key signed or not, accepted, rejected, entered rejected, chat; bit 3: from the user's side) |
//! | 9 | `[status]`: the user's program exits |
//! | 10 | `[who]`: a chat line from the user, the developer or the watcher |
//! | 11 | `[lo, hi]`: time passes (milliseconds) |
//!
//! Beyond "no panic", checked on every action the machines return:
//! - The user sends only its own messages, each logged too, signed by its key; it logs only
//!   messages that verify (a developer's session key under itself, anything else of a
//!   developer's under a key the user accepted), each with its chain hash (none for a
//!   control); it writes to the PTY only the keys of the Entered it has just logged, so only
//!   after it accepted a key; it asks consent only for the GnuPG-signed key it has just logged,
//!   and shows only the chat it has just logged. Its log always passes the crate's verifier.
//! - The watcher never sends, rings or changes access, and every send fails with `Watching`.
//! - The developer sends only its own messages, each logged too, signed by its key: its
//!   session key once, keys and chat only with write access; its access changes only on the
//!   user's answer about its key, and the bell rings only on the rejection of one of its keys.
//! - Both log only messages that verify (the user's under the user's key, others' under keys
//!   they introduced), with their chain hashes, show only the output and chat they have just
//!   logged, and fail only on the first two messages. While no message was forged with the
//!   user's key, their logs pass the crate's verifier too.
//! - Every message a machine sends goes through the wire codec unchanged but for its pointers.

#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use kanava_debugme::developer::{Access, Developer, DeveloperAction, SendError};
use kanava_debugme::frame::{Frame, decode_frame, encode_frame};
use kanava_debugme::hash::{self, ActivityKind};
use kanava_debugme::json::encode_line;
use kanava_debugme::model::{
    Activity, AnyMessage, Control, ControlAction, Entered, Hash, LogEntry, Message, PerhapsSigned,
    PublicKey, Seen, Signature,
};
use kanava_debugme::recover::with_pointers;
use kanava_debugme::sign::{self, SessionKey};
use kanava_debugme::user::{ConsentRequest, User, UserAction, UserError};
use kanava_debugme::verify::{GpgCheck, verify};
use libfuzzer_sys::fuzz_target;

/// The secrets of the user, the developer, another developer and a stranger.
const SECRETS: [[u8; 32]; 4] = [[1; 32], [2; 32], [3; 32], [4; 32]];
const USER: usize = 0;
const DEVELOPER: usize = 1;

/// At most this many records are run, and the pool of hashes to point to is this long: a
/// message no accepted key signed costs the user a signature check for every pair of a backlog
/// entry and a recent Entered, so that keys typed, then outputs, then forgeries cost the cube
/// of the records; 40 keeps the worst input within about 5 s under the address sanitizer.
const MAX_RECORDS: usize = 40;
const POOL: usize = 128;

/// The machines leave GnuPG to their callers; the verifier takes any statement here too.
struct AnyGpg;

impl GpgCheck for AnyGpg {
    fn check(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> Result<String, String> {
        Ok("fuzz".into())
    }
}

/// The input: records of an op and its payload.
struct Records<'a>(&'a [u8]);

impl<'a> Iterator for Records<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&op, rest) = self.0.split_first()?;
        let len = match rest {
            [lo, hi, ..] => usize::from(u16::from_le_bytes([*lo, *hi])),
            _ => 0,
        };
        let rest = rest.get(2..).unwrap_or_default();
        let (payload, rest) = rest.split_at(len.min(rest.len()));
        self.0 = rest;
        Some((op, payload))
    }
}

/// Parameter `i` of a payload (0 when missing), and the data after `n` parameters.
fn param(payload: &[u8], i: usize) -> u8 {
    payload.get(i).copied().unwrap_or(0)
}

fn data(payload: &[u8], n: usize) -> &[u8] {
    payload.get(n..).unwrap_or_default()
}

fn keys() -> [SessionKey; 4] {
    SECRETS.map(SessionKey::from_secret)
}

/// The message as the wire carries it: without its pointers.
fn stripped(message: &AnyMessage) -> AnyMessage {
    match message {
        AnyMessage::User(Message::Activity(a)) => {
            AnyMessage::User(Message::Activity(with_pointers(a, &(None, None))))
        }
        AnyMessage::Developer(Message::Activity(a)) => {
            AnyMessage::Developer(Message::Activity(with_pointers(a, &(None, None))))
        }
        other => other.clone(),
    }
}

/// The `L` frame of a message a machine sends, checked to cross the wire intact.
fn frame(message: &AnyMessage) -> Vec<u8> {
    let bytes = encode_frame(&Frame::Message(message.clone()));
    match decode_frame(&bytes) {
        Ok(Frame::Message(decoded)) => {
            assert_eq!(decoded, stripped(message), "changed on the wire")
        }
        other => panic!("a sent message does not decode: {other:?}"),
    }
    bytes
}

/// The message of a queued frame.
fn message(frame: &[u8]) -> AnyMessage {
    match decode_frame(frame) {
        Ok(Frame::Message(message)) => message,
        other => panic!("a queued frame does not decode: {other:?}\n{frame:02x?}"),
    }
}

/// Whether a logged message verifies under one of `keys`, with the pointers it was logged with.
fn signed_by(message: &AnyMessage, keys: &[PublicKey]) -> bool {
    keys.iter().any(|key| match message {
        AnyMessage::User(Message::Activity(a)) => sign::activity_verifies(key, a),
        AnyMessage::Developer(Message::Activity(a)) => sign::activity_verifies(key, a),
        AnyMessage::User(Message::Control(c)) | AnyMessage::Developer(Message::Control(c)) => {
            sign::control_verifies(key, c)
        }
    })
}

/// A log entry's hash is its activity's chain hash, and none for a control.
fn check_hash(entry: &LogEntry) {
    let expected = match &entry.message {
        AnyMessage::User(Message::Activity(a)) => Some(hash::activity(a)),
        AnyMessage::Developer(Message::Activity(a)) => Some(hash::activity(a)),
        _ => None,
    };
    assert_eq!(entry.hash, expected, "logged with a wrong hash");
}

fn log_verifies(who: &str, log: &[LogEntry]) {
    let text: String = log
        .iter()
        .enumerate()
        .map(|(i, entry)| encode_line(&entry.clone().at(1.8e9 + i as f64)) + "\n")
        .collect();
    if let Err(error) = verify(&text, &mut AnyGpg) {
        panic!("the {who}'s log does not verify: {error}\n{text}");
    }
}

fn session_key_of(message: &AnyMessage) -> Option<&PerhapsSigned> {
    match message {
        AnyMessage::User(Message::Control(c)) | AnyMessage::Developer(Message::Control(c)) => {
            match &c.control {
                ControlAction::SessionKey(key, _) => Some(key),
                _ => None,
            }
        }
        _ => None,
    }
}

fn control_of(message: &AnyMessage) -> Option<&ControlAction> {
    match message {
        AnyMessage::User(Message::Control(c)) | AnyMessage::Developer(Message::Control(c)) => {
            Some(&c.control)
        }
        _ => None,
    }
}

/// The developer or the watcher, and what the harness knows of it.
struct Follower {
    machine: Developer,
    watcher: bool,
    own: Option<PublicKey>,
    user_key: Option<PublicKey>,
    /// Developer keys it has logged a session key of (its own included).
    developers: Vec<PublicKey>,
    started: bool,
    key_sent: bool,
    access: Access,
    own_sent: Vec<Hash>,
    log: Vec<LogEntry>,
    inbox: VecDeque<Vec<u8>>,
}

impl Follower {
    fn new(machine: Developer, own: Option<PublicKey>) -> Self {
        Self {
            watcher: own.is_none(),
            access: machine.access(),
            machine,
            own,
            user_key: None,
            developers: Vec::new(),
            started: false,
            key_sent: false,
            own_sent: Vec::new(),
            log: Vec::new(),
            inbox: VecDeque::new(),
        }
    }

    /// Checks the actions; returns the frames to relay.
    fn check(&mut self, actions: Vec<DeveloperAction>, pool: &mut Vec<Hash>) -> Vec<Vec<u8>> {
        let mut relay = Vec::new();
        let mut previous: Option<AnyMessage> = None;
        let mut sent = Vec::new();
        for action in actions {
            match action {
                DeveloperAction::Send(message) => {
                    assert!(!self.watcher, "a watcher sends {message:?}");
                    let own = self.own.clone().unwrap();
                    match &message {
                        AnyMessage::Developer(Message::Activity(_)) => {
                            assert_eq!(self.access, Access::ReadWrite, "types without access");
                        }
                        AnyMessage::Developer(Message::Control(c)) => match &c.control {
                            ControlAction::SessionKey(key, _) => {
                                assert!(!self.key_sent, "sends its session key twice");
                                assert_eq!(key.key(), &own);
                                self.key_sent = true;
                            }
                            ControlAction::ChatMessage(..) => {
                                assert_eq!(self.access, Access::ReadWrite, "chats without access");
                            }
                            other => panic!("a developer sends {other:?}"),
                        },
                        AnyMessage::User(_) => panic!("a developer sends a user message"),
                    }
                    relay.push(frame(&message));
                    sent.push(message);
                }
                DeveloperAction::Log(entry) => {
                    check_hash(&entry);
                    // What it sends, it logs too, signed by its key.
                    if let Some(at) = sent.iter().position(|m| *m == entry.message) {
                        sent.remove(at);
                        assert!(
                            signed_by(&entry.message, self.own.as_slice()),
                            "sends what it did not sign"
                        );
                        self.own_sent.extend(entry.hash.clone());
                    } else {
                        self.check_logged(&entry.message);
                    }
                    remember(pool, entry.hash.iter().cloned());
                    self.log.push(entry.clone());
                    previous = Some(entry.message);
                    continue;
                }
                DeveloperAction::Show(output) => match &previous {
                    Some(AnyMessage::User(Message::Activity(seen))) => {
                        assert_eq!(seen.activity.seen_data, output, "shows what it did not log");
                    }
                    other => panic!("shows output after {other:?}"),
                },
                DeveloperAction::Chat { sender, text } => {
                    let logged = previous.as_ref().and_then(control_of);
                    assert_eq!(
                        logged,
                        Some(&ControlAction::ChatMessage(sender, text)),
                        "shows chat it did not log"
                    );
                }
                DeveloperAction::Bell => {
                    assert!(!self.watcher, "a watcher rings");
                    match previous.as_ref().and_then(control_of) {
                        Some(ControlAction::EnteredRejected {
                            entered_rejected, ..
                        }) => assert!(
                            self.own_sent.contains(entered_rejected),
                            "rings for a key it did not send"
                        ),
                        other => panic!("rings after {other:?}"),
                    }
                }
                DeveloperAction::Access(access) => {
                    assert!(!self.watcher, "a watcher's access changes");
                    let own = self.own.as_ref();
                    let answer = match previous.as_ref().and_then(control_of) {
                        Some(ControlAction::SessionKeyAccepted(key)) if Some(key) == own => {
                            Access::ReadWrite
                        }
                        Some(ControlAction::SessionKeyRejected(key)) if Some(key) == own => {
                            Access::ReadOnly
                        }
                        other => panic!("access changes after {other:?}"),
                    };
                    assert!(
                        matches!(previous, Some(AnyMessage::User(_))),
                        "a developer changed our access"
                    );
                    assert_eq!(access, answer);
                    self.access = access;
                }
                DeveloperAction::Warn(_) => {}
            }
            previous = None;
        }
        assert!(sent.is_empty(), "sends what it does not log: {sent:?}");
        assert_eq!(
            self.machine.access(),
            self.access,
            "access changed silently"
        );
        relay
    }

    /// A logged message verifies under the key it must come from.
    fn check_logged(&mut self, message: &AnyMessage) {
        match message {
            AnyMessage::User(_) if self.user_key.is_none() => {
                let key = session_key_of(message).expect("the first message logged is a key");
                self.user_key = Some(key.key().clone());
            }
            AnyMessage::User(Message::Activity(_)) => self.started = true,
            AnyMessage::User(_) => {}
            AnyMessage::Developer(_) => {
                if let Some(key) = session_key_of(message) {
                    assert!(signed_by(message, &[key.key().clone()]), "an unsigned key");
                    self.developers.push(key.key().clone());
                    return;
                }
                let known: Vec<PublicKey> =
                    self.own.iter().chain(&self.developers).cloned().collect();
                assert!(signed_by(message, &known), "logged a developer's forgery");
                return;
            }
        }
        let user = self.user_key.clone().unwrap();
        assert!(
            signed_by(message, &[user]),
            "logged a forgery of the user's"
        );
    }

    fn receive(&mut self, frame: &[u8], now: Duration, pool: &mut Vec<Hash>) -> Vec<Vec<u8>> {
        match self.machine.receive(message(frame), now) {
            Ok(actions) => self.check(actions, pool),
            Err(error) => {
                assert!(!self.started, "fails after the start: {error}");
                Vec::new()
            }
        }
    }

    /// Sends of a watcher fail as such.
    fn check_send<T: std::fmt::Debug>(&self, result: &Result<T, SendError>) {
        if self.watcher {
            assert!(
                matches!(result, Err(SendError::Watching)),
                "a watcher may send: {result:?}"
            );
        }
    }
}

/// Adds hashes to the pool of pointers, keeping the newest.
fn remember(pool: &mut Vec<Hash>, hashes: impl IntoIterator<Item = Hash>) {
    for hash in hashes {
        if !pool.contains(&hash) {
            pool.push(hash);
        }
    }
    if pool.len() > POOL {
        pool.drain(..pool.len() - POOL);
    }
}

struct Session {
    keys: [SessionKey; 4],
    now: Duration,
    user: User,
    /// Keys the user accepted, as its SessionKeyAccepted said.
    accepted: Vec<PublicKey>,
    asked: VecDeque<ConsentRequest>,
    user_log: Vec<LogEntry>,
    user_inbox: VecDeque<Vec<u8>>,
    developer: Follower,
    watcher: Follower,
    pool: Vec<Hash>,
    /// Whether a message was forged with the user's key.
    forged_user: bool,
    /// The user's first frames, until the first op that is not a frame.
    start: Vec<Vec<u8>>,
}

impl Session {
    fn new() -> Self {
        let keys = keys();
        let now = Duration::from_secs(1000);
        let (user, actions) = User::start(SECRETS[USER], now);
        let developer = Developer::new(SECRETS[DEVELOPER]);
        let mut session = Self {
            now,
            user,
            accepted: Vec::new(),
            asked: VecDeque::new(),
            user_log: Vec::new(),
            user_inbox: VecDeque::new(),
            developer: Follower::new(developer, Some(keys[DEVELOPER].public())),
            watcher: Follower::new(Developer::watcher(), None),
            pool: Vec::new(),
            forged_user: false,
            start: Vec::new(),
            keys,
        };
        session.user_actions(actions);
        session.start = session.developer.inbox.drain(..).collect();
        session.watcher.inbox.clear();
        session
    }

    /// Queues the user's first frames for the developer and the watcher.
    fn queue_start(&mut self) {
        for bytes in std::mem::take(&mut self.start) {
            self.developer.inbox.push_back(bytes.clone());
            self.watcher.inbox.push_back(bytes);
        }
    }

    fn user_actions(&mut self, actions: Vec<UserAction>) {
        let mut previous: Option<AnyMessage> = None;
        // What it sends, it logs too (where the signature is checked).
        let mut sent = Vec::new();
        for action in actions {
            match action {
                UserAction::Send(message) => {
                    assert!(matches!(message, AnyMessage::User(_)), "sends {message:?}");
                    if let Some(ControlAction::SessionKeyAccepted(key)) = control_of(&message) {
                        self.accepted.push(key.clone());
                    }
                    let bytes = frame(&message);
                    self.developer.inbox.push_back(bytes.clone());
                    self.watcher.inbox.push_back(bytes);
                    sent.push(message);
                }
                UserAction::Log(entry) => {
                    check_hash(&entry);
                    let message = &entry.message;
                    let signer = match (message, session_key_of(message)) {
                        (AnyMessage::User(_), _) => vec![self.keys[USER].public()],
                        (AnyMessage::Developer(_), Some(key)) => vec![key.key().clone()],
                        (AnyMessage::Developer(_), None) => self.accepted.clone(),
                    };
                    assert!(signed_by(message, &signer), "logs a forgery: {message:?}");
                    if let Some(at) = sent.iter().position(|m| m == message) {
                        sent.remove(at);
                    }
                    remember(&mut self.pool, entry.hash.iter().cloned());
                    if let Some(ControlAction::EnteredRejected {
                        entered_rejected, ..
                    }) = control_of(message)
                    {
                        remember(&mut self.pool, [entered_rejected.clone()]);
                    }
                    self.user_log.push(entry.clone());
                    previous = Some(entry.message);
                    continue;
                }
                UserAction::WritePty(keys) => match &previous {
                    Some(AnyMessage::Developer(Message::Activity(entered))) => {
                        assert_eq!(
                            entered.activity.entered_data, keys,
                            "writes what it did not log"
                        );
                    }
                    other => panic!("writes to the PTY after {other:?}"),
                },
                UserAction::AskConsent(request) => {
                    match previous.as_ref().and_then(session_key_of) {
                        Some(PerhapsSigned::GpgSigned(key, statement, export)) => {
                            assert_eq!(&request.key, key);
                            assert_eq!(&request.gpg_signature, statement);
                            assert_eq!(&request.gpg_key_export, export);
                        }
                        other => panic!("asks consent after {other:?}"),
                    }
                    assert_eq!(request.statement, hash::public_key(&request.key));
                    self.asked.push_back(request);
                }
                UserAction::Chat { sender, text } => {
                    assert!(
                        matches!(previous, Some(AnyMessage::Developer(_))),
                        "shows its own chat"
                    );
                    let logged = previous.as_ref().and_then(control_of);
                    assert_eq!(logged, Some(&ControlAction::ChatMessage(sender, text)));
                }
            }
            previous = None;
        }
        assert!(sent.is_empty(), "sends what it does not log: {sent:?}");
    }

    fn relay_from_developer(&mut self, frames: Vec<Vec<u8>>) {
        for bytes in frames {
            self.user_inbox.push_back(bytes.clone());
            self.watcher.inbox.push_back(bytes);
        }
    }

    fn inject(&mut self, message: &AnyMessage) {
        let bytes = encode_frame(&Frame::Message(stripped(message)));
        self.user_inbox.push_back(bytes.clone());
        self.developer.inbox.push_back(bytes.clone());
        self.watcher.inbox.push_back(bytes);
    }

    fn pointer(&self, index: u8) -> Option<Hash> {
        match index {
            0 => None,
            i => self
                .pool
                .get(self.pool.len().checked_sub(usize::from(i))?)
                .cloned(),
        }
    }

    fn signer(&mut self, index: u8) -> &SessionKey {
        let index = usize::from(index) % self.keys.len();
        self.forged_user |= index == USER;
        &self.keys[index]
    }

    fn activity<A: ActivityKind>(&mut self, activity: A, p: &[u8]) -> Activity<A> {
        let mut activity = Activity {
            activity,
            prev_activity: self.pointer(param(p, 1)),
            prev_entered: self.pointer(param(p, 2)),
            elapsed_time: f64::from(param(p, 3)) / 8.0,
            signature: Signature::Ed25519(Vec::new()),
        };
        self.signer(param(p, 0)).sign_activity(&mut activity);
        activity
    }

    fn control(&mut self, p: &[u8]) -> AnyMessage {
        let kind = param(p, 1);
        let key = self.keys[usize::from(param(p, 2)) % self.keys.len()].public();
        let action = match kind % 6 {
            0 => ControlAction::SessionKey(
                PerhapsSigned::GpgSigned(key, data(p, 4).to_vec(), b"export".to_vec()),
                b"1".to_vec(),
            ),
            1 => ControlAction::SessionKey(PerhapsSigned::UnSigned(key), b"1".to_vec()),
            2 => ControlAction::SessionKeyAccepted(key),
            3 => ControlAction::SessionKeyRejected(key),
            4 => ControlAction::EnteredRejected {
                entered_rejected: self
                    .pointer(param(p, 2))
                    .unwrap_or_else(|| hash::sha512(hash::h(data(p, 4)))),
                entered_last_accepted: self.pointer(param(p, 3)),
            },
            _ => ControlAction::ChatMessage(b"fuzz".to_vec(), data(p, 4).to_vec()),
        };
        let mut control = Control {
            control: action,
            signature: Signature::Ed25519(Vec::new()),
        };
        self.signer(param(p, 0)).sign_control(&mut control);
        if kind & 8 != 0 {
            AnyMessage::User(Message::Control(control))
        } else {
            AnyMessage::Developer(Message::Control(control))
        }
    }

    fn deliver(&mut self, to: u8, n: u8) {
        let n = if n == 0 { usize::MAX } else { usize::from(n) };
        let (who, all) = (to % 4, to % 4 == 3);
        for _ in 0..n {
            let mut any = false;
            if (who == 0 || all)
                && let Some(bytes) = self.user_inbox.pop_front()
            {
                let actions = self.user.receive(message(&bytes));
                self.user_actions(actions);
                any = true;
            }
            if (who == 1 || all)
                && let Some(bytes) = self.developer.inbox.pop_front()
            {
                let frames = self.developer.receive(&bytes, self.now, &mut self.pool);
                self.relay_from_developer(frames);
                any = true;
            }
            if (who == 2 || all)
                && let Some(bytes) = self.watcher.inbox.pop_front()
            {
                let frames = self.watcher.receive(&bytes, self.now, &mut self.pool);
                assert!(frames.is_empty());
                any = true;
            }
            if !any {
                return;
            }
        }
    }

    fn run(&mut self, op: u8, p: &[u8]) {
        self.now += Duration::from_millis(1);
        if !op.is_multiple_of(12) {
            self.queue_start();
        }
        match op % 12 {
            0 => {
                if let Ok(Frame::Message(message)) = decode_frame(p) {
                    self.inject(&message);
                }
            }
            1 => {
                let actions = self.user.seen(p, self.now);
                self.user_actions(actions);
            }
            2 => {
                let now = self.now;
                let typed = self.developer.machine.type_keys(p, now);
                self.developer.check_send(&typed);
                if let Ok(actions) = typed {
                    let frames = self.developer.check(actions, &mut self.pool);
                    self.relay_from_developer(frames);
                }
                let typed = self.watcher.machine.type_keys(p, now);
                self.watcher.check_send(&typed);
            }
            3 => {
                let statement = self.developer.machine.session_key_hash().unwrap();
                let sent = self
                    .developer
                    .machine
                    .send_session_key(statement, p.to_vec());
                if let Ok(actions) = sent {
                    let frames = self.developer.check(actions, &mut self.pool);
                    self.relay_from_developer(frames);
                }
                let sent = self
                    .watcher
                    .machine
                    .send_session_key(Vec::new(), Vec::new());
                self.watcher.check_send(&sent);
            }
            4 => self.deliver(param(p, 0), param(p, 1)),
            5 => {
                let answer = param(p, 0);
                if answer & 2 != 0 {
                    let stranger = self.keys[3].public();
                    if !self.asked.iter().any(|r| r.key == stranger) {
                        assert_eq!(
                            self.user.consent(&stranger, true),
                            Err(UserError::NotPending)
                        );
                    }
                } else if let Some(request) = self.asked.pop_front() {
                    // Asked twice for one key, it is answered once.
                    let again = self.asked.iter().any(|r| r.key == request.key);
                    match self.user.consent(&request.key, answer & 1 != 0) {
                        Ok(actions) => self.user_actions(actions),
                        Err(UserError::NotPending) => assert!(again || self.answered(&request.key)),
                    }
                }
            }
            6 => {
                let payload = data(p, 4);
                let split = usize::from(param(p, 3)).min(payload.len());
                let entered = Entered {
                    entered_data: payload[..split].to_vec(),
                    echo_data: payload[split..].to_vec(),
                };
                let entered = self.activity(entered, p);
                self.inject(&AnyMessage::Developer(Message::Activity(entered)));
            }
            7 => {
                let seen = Seen {
                    seen_data: data(p, 4).to_vec(),
                };
                let seen = self.activity(seen, p);
                self.inject(&AnyMessage::User(Message::Activity(seen)));
            }
            8 => {
                let message = self.control(p);
                self.inject(&message);
            }
            9 => {
                let actions = self.user.end(i32::from(param(p, 0) as i8), self.now);
                self.user_actions(actions);
            }
            10 => match param(p, 0) % 3 {
                0 => {
                    let actions = self.user.chat(b"user", data(p, 1));
                    self.user_actions(actions);
                }
                1 => {
                    let chat = self.developer.machine.chat(b"dev", data(p, 1));
                    if let Ok(actions) = chat {
                        let frames = self.developer.check(actions, &mut self.pool);
                        self.relay_from_developer(frames);
                    }
                }
                _ => {
                    let chat = self.watcher.machine.chat(b"watcher", data(p, 1));
                    self.watcher.check_send(&chat);
                }
            },
            _ => {
                let ms = u16::from_le_bytes([param(p, 0), param(p, 1)]);
                self.now += Duration::from_millis(u64::from(ms));
            }
        }
    }

    /// Whether the user answered about `key` already (its answer is in its log).
    fn answered(&self, key: &PublicKey) -> bool {
        self.user_log.iter().any(|entry| {
            matches!(
                control_of(&entry.message),
                Some(ControlAction::SessionKeyAccepted(k) | ControlAction::SessionKeyRejected(k)) if k == key
            )
        })
    }
}

fuzz_target!(|input: &[u8]| {
    let mut session = Session::new();
    for (op, payload) in Records(input).take(MAX_RECORDS) {
        session.run(op, payload);
    }
    // Whatever is still queued arrives.
    session.queue_start();
    session.deliver(3, 0);
    log_verifies("user", &session.user_log);
    if !session.forged_user {
        log_verifies("developer", &session.developer.log);
        log_verifies("watcher", &session.watcher.log);
    }
});
