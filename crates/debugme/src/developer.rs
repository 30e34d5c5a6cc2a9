//! The developer's side of a debug-me session (spec 6.2, 6.3) as a state machine without I/O,
//! so that `kanava connect`, `kanava watch` and `kanava download` only move bytes and the
//! bookkeeping can be tested in memory. A watcher or downloader is the same machine that never
//! sends.
//!
//! Messages arrive as the wire carries them, without pointers; the machine recovers them by
//! trial before checking anything. Unlike the real client it never gives up after the start:
//! an unverifiable or illegal message becomes a [`Warning`], and the next verifiable Seen
//! resynchronises it. It also keeps the last Entered known to be accepted among its
//! candidates, which the real client loses while keys are in flight (spec 6.2).
//!
//! Every call returns [`DeveloperAction`]s for the caller to carry out in order. Time comes from
//! the caller, as a reading of any monotonic clock.

use std::collections::VecDeque;
use std::time::Duration;

use crate::hash::{self, Hex};
use crate::model::{
    Activity, AnyMessage, Control, ControlAction, Entered, Hash, LogEntry, Message, PerhapsSigned,
    PublicKey, Seen, Signature, Val,
};
use crate::recover::{self, Pointers, with_pointers};
use crate::sign::{self, SessionKey};

/// The most keys one Entered carries (one read of stdin).
pub const MAX_CHUNK: usize = 1024;

/// Recent activities kept for resynchronising after a message the usual candidates miss.
const HISTORY: usize = 64;

/// Own Entered remembered, to recognise a rejection of one of them.
const OWN_SENT: usize = 1024;

/// Whether this side may type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A watcher or downloader: it never sends.
    Watching,
    /// A developer whose session key is not sent yet, or not answered yet.
    Waiting,
    /// The user accepted the session key: keys are sent.
    ReadWrite,
    /// The user rejected the session key: the session is watched read-only.
    ReadOnly,
}

/// What the caller must do, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum DeveloperAction {
    /// Send this message to the server (the wire codec drops its pointers).
    Send(AnyMessage),
    /// Append this to the developer's log (pointers restored, chain hash as `loggedHash`).
    Log(LogEntry),
    /// Show the user's terminal output.
    Show(Val),
    /// Show a chat line.
    Chat {
        /// Who sent it, as they named themselves.
        sender: Val,
        /// The line.
        text: Val,
    },
    /// The user rejected one of our Entered: ring the bell; what was typed since is lost.
    Bell,
    /// Our access changed: the user accepted or rejected our session key.
    Access(Access),
    /// Something was wrong with a message; it was dropped or resynchronised to.
    Warn(Warning),
}

/// A message the session could not take as it came. None is fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Warning {
    /// A user message that the user's key signed under no pointers we know; it was dropped.
    #[error("a message from the user does not verify; dropped")]
    UnverifiedUser,
    /// A user Seen that verifies but does not follow what we saw; we resynchronised to it.
    #[error("the user's output does not follow what was seen before; resynchronised")]
    IllegalSeen,
    /// A developer message that no developer key we know signed; it was ignored.
    #[error("a message from a developer does not verify; ignored")]
    UnverifiedDeveloper,
}

/// Why a session cannot be followed: its first two messages are not the user's session key
/// and first output (spec 6.2 "Start").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The first message is not the user's session key.
    #[error("the session does not start with the user's session key")]
    NoUserKey,
    /// The user's session key is not signed by itself.
    #[error("the user's session key does not verify")]
    BadUserKey,
    /// The second message is not the user's first output, with no pointers.
    #[error("the session's second message is not the user's first output")]
    NoStartSeen,
    /// The user's first output is not signed by the user's key.
    #[error("the user's first output does not verify under the user's key")]
    BadStartSeen,
}

/// Why something cannot be sent now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A watcher or downloader sends nothing.
    #[error("watching: nothing is sent")]
    Watching,
    /// The user has not accepted our session key (or it is not sent yet).
    #[error("the user has not granted write access yet")]
    NotGranted,
    /// The user rejected our session key.
    #[error("the user did not grant write access to their terminal; read-only")]
    ReadOnly,
    /// The session key goes out once.
    #[error("the session key was sent already")]
    KeyAlreadySent,
}

/// A developer's, watcher's or downloader's view of a session.
pub struct Developer {
    /// Our session key: none for a watcher, and discarded once rejected.
    key: Option<SessionKey>,
    own: Option<PublicKey>,
    access: Access,
    key_sent: bool,
    user_key: Option<PublicKey>,
    started: bool,
    /// Other developers' session keys.
    others: Vec<PublicKey>,
    last_seen: Option<Hash>,
    last_seen_at: Duration,
    last_activity: Option<Hash>,
    last_activity_at: Duration,
    last_entered: Option<Hash>,
    /// The last Entered the user is known to have accepted (a Seen's `prevEntered`, or a
    /// rejection's `enteredLastAccepted`).
    last_accepted: Option<Hash>,
    last_chunk: Val,
    /// Own chunks and their hashes since the last Seen.
    sent_since: Vec<Val>,
    entered_since: Vec<Hash>,
    /// Other developers' Entered since the last Seen.
    from_others: Vec<Hash>,
    own_sent: VecDeque<Hash>,
    /// Recent activities and recent Entered, newest last.
    recent: VecDeque<Hash>,
    recent_entered: VecDeque<Hash>,
}

impl Developer {
    /// A developer with the session key of the 32 random bytes `secret`. It may type once it
    /// has sent its key ([`Developer::send_session_key`]) and the user accepted it.
    pub fn new(secret: [u8; 32]) -> Self {
        let key = SessionKey::from_secret(secret);
        Self {
            own: Some(key.public()),
            key: Some(key),
            access: Access::Waiting,
            ..Self::watcher()
        }
    }

    /// A watcher or downloader: the same checks, and it never sends.
    pub fn watcher() -> Self {
        Self {
            key: None,
            own: None,
            access: Access::Watching,
            key_sent: false,
            user_key: None,
            started: false,
            others: Vec::new(),
            last_seen: None,
            last_seen_at: Duration::ZERO,
            last_activity: None,
            last_activity_at: Duration::ZERO,
            last_entered: None,
            last_accepted: None,
            last_chunk: Vec::new(),
            sent_since: Vec::new(),
            entered_since: Vec::new(),
            from_others: Vec::new(),
            own_sent: VecDeque::new(),
            recent: VecDeque::new(),
            recent_entered: VecDeque::new(),
        }
    }

    /// Whether we may type.
    pub fn access(&self) -> Access {
        self.access
    }

    /// What the GnuPG statement must say for our session key (the 128 hex characters of its
    /// hash, to clearsign); none for a watcher.
    pub fn session_key_hash(&self) -> Option<Hex> {
        self.own.as_ref().map(hash::public_key)
    }

    /// Our session key, bound to our GnuPG identity by `gpg_signature` (the clearsigned
    /// [`Developer::session_key_hash`]) and `gpg_key_export` (the armoured public key).
    pub fn send_session_key(
        &mut self,
        gpg_signature: Val,
        gpg_key_export: Val,
    ) -> Result<Vec<DeveloperAction>, SendError> {
        match self.access {
            Access::Watching => return Err(SendError::Watching),
            Access::ReadOnly => return Err(SendError::ReadOnly),
            Access::ReadWrite => return Err(SendError::KeyAlreadySent),
            Access::Waiting if self.key_sent => return Err(SendError::KeyAlreadySent),
            Access::Waiting => {}
        }
        let key = self.key.as_ref().ok_or(SendError::Watching)?;
        let mut control = Control {
            control: ControlAction::SessionKey(
                PerhapsSigned::GpgSigned(key.public(), gpg_signature, gpg_key_export),
                b"1".to_vec(),
            ),
            signature: Signature::Ed25519(Vec::new()),
        };
        key.sign_control(&mut control);
        self.key_sent = true;
        Ok(sent(AnyMessage::Developer(Message::Control(control)), None))
    }

    /// Keys read from stdin at `now`: one Entered per [`MAX_CHUNK`] bytes, to send and log.
    pub fn type_keys(
        &mut self,
        keys: &[u8],
        now: Duration,
    ) -> Result<Vec<DeveloperAction>, SendError> {
        self.writer()?;
        let mut actions = Vec::new();
        for chunk in keys.chunks(MAX_CHUNK) {
            let echo_data = if self.last_activity == self.last_seen {
                self.sent_since.concat()
            } else {
                self.last_chunk.clone()
            };
            let mut entered = Activity {
                activity: Entered {
                    entered_data: chunk.to_vec(),
                    echo_data,
                },
                prev_activity: self.last_activity.clone(),
                prev_entered: self.last_entered.clone(),
                elapsed_time: now.saturating_sub(self.last_activity_at).as_secs_f64(),
                signature: Signature::Ed25519(Vec::new()),
            };
            self.writer()?.sign_activity(&mut entered);
            let chain = hash::activity(&entered);
            self.last_activity = Some(chain.clone());
            self.last_activity_at = now;
            self.last_entered = Some(chain.clone());
            self.last_chunk = chunk.to_vec();
            self.sent_since.push(chunk.to_vec());
            self.entered_since.push(chain.clone());
            remember(&mut self.own_sent, &chain, OWN_SENT);
            self.remember_entered(&chain);
            actions.extend(sent(
                AnyMessage::Developer(Message::Activity(entered)),
                Some(chain),
            ));
        }
        Ok(actions)
    }

    /// A chat line from us.
    pub fn chat(&mut self, sender: &[u8], text: &[u8]) -> Result<Vec<DeveloperAction>, SendError> {
        let mut control = Control {
            control: ControlAction::ChatMessage(sender.to_vec(), text.to_vec()),
            signature: Signature::Ed25519(Vec::new()),
        };
        self.writer()?.sign_control(&mut control);
        Ok(sent(AnyMessage::Developer(Message::Control(control)), None))
    }

    /// A message from the server, received at `now`. Only the first two messages can fail:
    /// they must be the user's session key and first output.
    pub fn receive(
        &mut self,
        message: AnyMessage,
        now: Duration,
    ) -> Result<Vec<DeveloperAction>, StartError> {
        let Some(user_key) = self.user_key.clone() else {
            return self.first(message);
        };
        if !self.started {
            return self.second(message, &user_key, now);
        }
        Ok(match message {
            AnyMessage::User(Message::Activity(seen)) => self.seen(&seen, &user_key, now),
            AnyMessage::User(Message::Control(control)) => self.user_control(control, &user_key),
            AnyMessage::Developer(Message::Control(control)) => self.developer_control(control),
            AnyMessage::Developer(Message::Activity(entered)) => self.developer_entered(&entered),
        })
    }

    /// Our session key, if we may send.
    fn writer(&self) -> Result<&SessionKey, SendError> {
        match (self.access, &self.key) {
            (Access::ReadWrite, Some(key)) => Ok(key),
            (Access::Waiting, _) => Err(SendError::NotGranted),
            (Access::ReadOnly, _) => Err(SendError::ReadOnly),
            (Access::Watching | Access::ReadWrite, _) => Err(SendError::Watching),
        }
    }

    fn first(&mut self, message: AnyMessage) -> Result<Vec<DeveloperAction>, StartError> {
        let AnyMessage::User(Message::Control(control)) = &message else {
            return Err(StartError::NoUserKey);
        };
        let ControlAction::SessionKey(key, _) = &control.control else {
            return Err(StartError::NoUserKey);
        };
        if !sign::control_verifies(key.key(), control) {
            return Err(StartError::BadUserKey);
        }
        self.user_key = Some(key.key().clone());
        Ok(vec![log(message, None)])
    }

    fn second(
        &mut self,
        message: AnyMessage,
        user_key: &PublicKey,
        now: Duration,
    ) -> Result<Vec<DeveloperAction>, StartError> {
        let AnyMessage::User(Message::Activity(seen)) = &message else {
            return Err(StartError::NoStartSeen);
        };
        if seen.prev_activity.is_some() || seen.prev_entered.is_some() {
            return Err(StartError::NoStartSeen);
        }
        if !sign::activity_verifies(user_key, seen) {
            return Err(StartError::BadStartSeen);
        }
        let chain = hash::activity(seen);
        self.started = true;
        self.last_seen = Some(chain.clone());
        self.last_activity = Some(chain.clone());
        self.last_seen_at = now;
        self.last_activity_at = now;
        remember(&mut self.recent, &chain, HISTORY);
        let data = seen.activity.seen_data.clone();
        Ok(vec![log(message, Some(chain)), DeveloperAction::Show(data)])
    }

    /// A user Seen after the start (spec 6.2 "A Seen is legal"); an illegal one is taken as
    /// the user's view, with a warning.
    fn seen(
        &mut self,
        seen: &Activity<Seen>,
        user_key: &PublicKey,
        now: Duration,
    ) -> Vec<DeveloperAction> {
        let Some(pointers) = self.recover(seen, std::slice::from_ref(user_key)) else {
            return vec![DeveloperAction::Warn(Warning::UnverifiedUser)];
        };
        let seen = with_pointers(seen, &pointers);
        let chain = hash::activity(&seen);
        let (pa, pe) = pointers;
        let pe_in_flight = pe
            .as_ref()
            .is_some_and(|pe| self.entered_since.contains(pe));
        let mut actions = Vec::new();
        if pa.is_some()
            && (pa == self.last_seen || self.from_others.iter().any(|h| Some(h) == pa.as_ref()))
        {
            if self
                .sent_since
                .concat()
                .starts_with(&seen.activity.seen_data)
            {
                // Upstream drops as many list elements as the Seen has bytes.
                self.drop_sent(seen.activity.seen_data.len());
            } else {
                self.drop_sent(self.sent_since.len());
            }
        } else if let Some(at) = pa
            .as_ref()
            .and_then(|pa| self.entered_since.iter().position(|h| h == pa))
        {
            self.drop_sent(at + 1);
        } else {
            actions.push(DeveloperAction::Warn(Warning::IllegalSeen));
            self.drop_sent(self.sent_since.len());
        }
        if !pe_in_flight {
            self.last_entered = pe.clone();
        }
        self.last_accepted = pe;
        self.last_seen = Some(chain.clone());
        self.last_activity = Some(chain.clone());
        self.last_seen_at = now;
        self.last_activity_at = now;
        self.from_others.clear();
        remember(&mut self.recent, &chain, HISTORY);
        let data = seen.activity.seen_data.clone();
        actions.push(log(AnyMessage::User(Message::Activity(seen)), Some(chain)));
        actions.push(DeveloperAction::Show(data));
        actions
    }

    fn user_control(&mut self, control: Control, user_key: &PublicKey) -> Vec<DeveloperAction> {
        if !sign::control_verifies(user_key, &control) {
            return vec![DeveloperAction::Warn(Warning::UnverifiedUser)];
        }
        let mut actions = vec![log(
            AnyMessage::User(Message::Control(control.clone())),
            None,
        )];
        let own = self.own.clone();
        let ours = |key: &PublicKey| own.as_ref() == Some(key);
        match control.control {
            ControlAction::EnteredRejected {
                entered_rejected,
                entered_last_accepted,
            } => {
                if self.own_sent.contains(&entered_rejected) {
                    // Resynchronise on the last Seen: the rejected key and all typed after it
                    // are lost, and the next key follows what the user has.
                    self.drop_sent(self.sent_since.len());
                    self.last_entered = entered_last_accepted.clone();
                    self.last_activity = self.last_seen.clone();
                    self.last_activity_at = self.last_seen_at;
                    actions.push(DeveloperAction::Bell);
                } else if self.entered_since.is_empty() {
                    self.last_entered = entered_last_accepted.clone();
                }
                self.last_accepted = entered_last_accepted;
            }
            ControlAction::SessionKeyAccepted(key)
                if ours(&key) && self.access == Access::Waiting =>
            {
                self.access = Access::ReadWrite;
                actions.push(DeveloperAction::Access(Access::ReadWrite));
            }
            ControlAction::SessionKeyRejected(key)
                if ours(&key) && self.access != Access::ReadOnly =>
            {
                self.access = Access::ReadOnly;
                self.key = None;
                self.drop_sent(self.sent_since.len());
                actions.push(DeveloperAction::Access(Access::ReadOnly));
            }
            ControlAction::ChatMessage(sender, text) => {
                actions.push(DeveloperAction::Chat { sender, text });
            }
            _ => {}
        }
        actions
    }

    /// Another developer's control: its session key (signed by itself) makes its messages
    /// count; the rest must be signed by a known developer key.
    fn developer_control(&mut self, control: Control) -> Vec<DeveloperAction> {
        let verified = match &control.control {
            ControlAction::SessionKey(key, _) => {
                let verified = sign::control_verifies(key.key(), &control);
                let new = self.own.as_ref() != Some(key.key()) && !self.others.contains(key.key());
                if verified && new {
                    self.others.push(key.key().clone());
                }
                verified
            }
            _ => self
                .others
                .iter()
                .any(|key| sign::control_verifies(key, &control)),
        };
        if !verified {
            return vec![DeveloperAction::Warn(Warning::UnverifiedDeveloper)];
        }
        let chat = match &control.control {
            ControlAction::ChatMessage(sender, text) => Some(DeveloperAction::Chat {
                sender: sender.clone(),
                text: text.clone(),
            }),
            _ => None,
        };
        std::iter::once(log(AnyMessage::Developer(Message::Control(control)), None))
            .chain(chat)
            .collect()
    }

    fn developer_entered(&mut self, entered: &Activity<Entered>) -> Vec<DeveloperAction> {
        let others = self.others.clone();
        let Some(pointers) = self.recover(entered, &others) else {
            return vec![DeveloperAction::Warn(Warning::UnverifiedDeveloper)];
        };
        let entered = with_pointers(entered, &pointers);
        let chain = hash::activity(&entered);
        self.from_others.push(chain.clone());
        self.remember_entered(&chain);
        vec![log(
            AnyMessage::Developer(Message::Activity(entered)),
            Some(chain),
        )]
    }

    /// The pointers one of `keys` signed `activity` with. First the spec's candidates (last
    /// Seen, last Entered, own and others' Entered since the last Seen) plus the last Entered
    /// known to be accepted, likely pairs first; then, to resynchronise, recent activities
    /// with recent Entered.
    fn recover<A: hash::ActivityKind + Clone>(
        &self,
        activity: &Activity<A>,
        keys: &[PublicKey],
    ) -> Option<Pointers> {
        let mut candidates = vec![
            self.last_seen.clone(),
            self.last_entered.clone().or_else(|| self.last_seen.clone()),
            self.last_accepted.clone(),
        ];
        candidates.extend(self.entered_since.iter().rev().cloned().map(Some));
        candidates.extend(self.from_others.iter().rev().cloned().map(Some));
        let known_entered = [self.last_accepted.clone(), self.last_entered.clone(), None];
        let likely = candidates.iter().flat_map(|pa| {
            std::iter::once((pa.clone(), pa.clone()))
                .chain(known_entered.iter().map(move |pe| (pa.clone(), pe.clone())))
        });
        let mut all = vec![None];
        all.extend(candidates.iter().cloned());
        let mut recent = vec![None];
        recent.extend(self.recent.iter().rev().cloned().map(Some));
        let mut recent_entered = vec![None, self.last_accepted.clone()];
        recent_entered.extend(self.recent_entered.iter().rev().cloned().map(Some));
        recover::first_signed(
            activity,
            likely
                .chain(recover::pairs(&all, &all))
                .chain(recover::pairs(&recent, &recent_entered)),
            keys,
        )
    }

    /// Drops the `n` oldest own chunks since the last Seen (all of them when `n` is larger).
    fn drop_sent(&mut self, n: usize) {
        let n = n.min(self.sent_since.len());
        self.sent_since.drain(..n);
        self.entered_since.drain(..n);
    }

    fn remember_entered(&mut self, chain: &Hash) {
        remember(&mut self.recent, chain, HISTORY);
        remember(&mut self.recent_entered, chain, HISTORY);
    }
}

/// Appends `hash` to `list`, keeping the `limit` newest.
fn remember(list: &mut VecDeque<Hash>, hash: &Hash, limit: usize) {
    list.push_back(hash.clone());
    if list.len() > limit {
        list.pop_front();
    }
}

fn log(message: AnyMessage, hash: Option<Hash>) -> DeveloperAction {
    DeveloperAction::Log(LogEntry { message, hash })
}

/// A message of ours: send it, then log it.
fn sent(message: AnyMessage, hash: Option<Hash>) -> Vec<DeveloperAction> {
    vec![DeveloperAction::Send(message.clone()), log(message, hash)]
}
