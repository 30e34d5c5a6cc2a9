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
    /// is only ever absent or an Entered, so the other entries are not tried there.
    fn recover(&self, entered: &Activity<Entered>) -> Option<recover::Pointers> {
        let mut activities: Vec<Option<Hash>> = self
            .backlog
            .iter()
            .map(|entry| Some(entry.hash.clone()))
            .collect();
        activities.push(self.last_entered.clone());
        activities.push(None);
        let mut entered_candidates = vec![self.last_entered.clone(), None];
        entered_candidates.extend(
            self.backlog
                .iter()
                .filter(|entry| !entry.seen)
                .map(|entry| Some(entry.hash.clone())),
        );
        recover::first_signed(
            entered,
            recover::pairs(&activities, &entered_candidates),
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

    /// Pushes the newest entry and keeps at most [`BACKLOG_ENTRIES`] older ones, within
    /// [`BACKLOG_BYTES`].
    fn push(&mut self, entry: Entry) {
        self.backlog.push_front(entry);
        let mut bytes = 0;
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
