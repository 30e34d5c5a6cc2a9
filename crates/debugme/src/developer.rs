//! The developer's side of a debug-me session (spec 6.2, 6.3) as a state machine without I/O,
//! so that `kanava connect`, `kanava watch` and `kanava download` only move bytes and the
//! bookkeeping can be tested in memory. A watcher or downloader is the same machine that never
//! sends.
//!
//! Messages arrive as the wire carries them, without pointers; the machine recovers them by
//! trial before checking anything. Where the real client exits or loses keys, it does not
//! (what it sends is still what a real user accepts):
//! - After the start, an unverifiable or illegal message is a [`Warning`], never an error; an
//!   illegal Seen is taken as the user's view, and recent activities are candidates too, so
//!   the next verifiable Seen resynchronises.
//! - The last Entered known to be accepted stays a candidate, which the real client loses
//!   while a key is in flight (spec 6.2, "Real-client crash").
//! - Keys stay in flight (in sentSince/enteredSince) until a Seen names them, or until a Seen's
//!   `prevEntered` shows the user accepted someone else's key first, so they will be rejected.
//!   The real client clears them on any Seen after the last Seen that is not a prefix of them
//!   (and drops as many keys as that Seen has bytes when it is), so a burst echoed in two
//!   reads followed by typeahead made it exit on the next Seen.
//! - `lastEntered` follows a Seen's `prevEntered` only when none of our keys is in flight.
//! - After the rejection of one of our keys, the next key chains after the last Seen; the
//!   real client chains it after the rejected key, which the user cannot find, so it is lost
//!   without a word. A rejection of another developer's key leaves our keys alone.
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

/// Other developers' session keys kept; later ones are ignored.
const MAX_OTHER_DEVELOPERS: usize = 16;

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

/// One of our Entered that no Seen has named yet.
struct InFlight {
    keys: Val,
    hash: Hash,
    prev_entered: Option<Hash>,
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
    /// Own Entered since the last Seen that named them (sentSince and enteredSince).
    in_flight: Vec<InFlight>,
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
            in_flight: Vec::new(),
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

    /// Whether keys we sent are still waiting for the user's output to name them. Keys sent
    /// now would be typed ahead of that output, which the user accepts only when its echo
    /// arrives whole.
    pub fn keys_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
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
                self.in_flight
                    .iter()
                    .flat_map(|sent| sent.keys.iter().copied())
                    .collect()
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
            self.in_flight.push(InFlight {
                keys: chunk.to_vec(),
                hash: chain.clone(),
                prev_entered: entered.prev_entered.clone(),
            });
            self.last_activity = Some(chain.clone());
            self.last_activity_at = now;
            self.last_entered = Some(chain.clone());
            self.last_chunk = chunk.to_vec();
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

    /// A user Seen after the start (spec 6.2 "A Seen is legal"). Chained after one of our
    /// keys, it acknowledges that key and those before it. Chained after the last Seen or
    /// another developer's Entered, it leaves our keys in flight, unless its `prevEntered`
    /// shows the user accepted someone else's key since ours were sent, so that ours will be
    /// rejected. Anything else is illegal: a warning, and the Seen is taken as the user's view.
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
        let mut actions = Vec::new();
        let ours = pa
            .as_ref()
            .and_then(|pa| self.in_flight.iter().position(|sent| &sent.hash == pa));
        if let Some(at) = ours {
            self.in_flight.drain(..=at);
        } else if pa.is_some()
            && (pa == self.last_seen
                || pa.as_ref().is_some_and(|pa| {
                    self.from_others.contains(pa) || self.recent_entered.contains(pa)
                }))
        {
            let doomed = self.in_flight.first().is_some_and(|first| {
                first.prev_entered != pe
                    && !self
                        .in_flight
                        .iter()
                        .any(|sent| Some(&sent.hash) == pe.as_ref())
            });
            if doomed {
                self.in_flight.clear();
            }
        } else {
            actions.push(DeveloperAction::Warn(Warning::IllegalSeen));
            self.in_flight.clear();
        }
        if self.in_flight.is_empty() {
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
                    self.in_flight.clear();
                    self.last_entered = entered_last_accepted.clone();
                    self.last_activity = self.last_seen.clone();
                    self.last_activity_at = self.last_seen_at;
                    actions.push(DeveloperAction::Bell);
                } else if self.in_flight.is_empty() {
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
                self.in_flight.clear();
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
                // Anyone with the session's URL can add keys; their messages are each tried
                // under every key, so only the first few count.
                if verified && new && self.others.len() < MAX_OTHER_DEVELOPERS {
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
        candidates.extend(
            self.in_flight
                .iter()
                .rev()
                .map(|sent| Some(sent.hash.clone())),
        );
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::json::{decode_line, encode_line};
    use crate::user::{ConsentRequest, User, UserAction};
    use crate::verify::{GpgCheck, verify};
    use crate::wire::{decode_message, encode_message};

    /// Takes any GnuPG statement (the real one is checked in `real_debug_me_verifies_the_logs`).
    struct AnyGpg;

    impl GpgCheck for AnyGpg {
        fn check(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> Result<String, String> {
            Ok("Dev <dev@example.org>".into())
        }
    }

    /// A stand-in GnuPG binding: the statement is the key's hash itself.
    fn fake_gpg(key_hash: &[u8]) -> (Val, Val) {
        (key_hash.to_vec(), b"export".to_vec())
    }

    fn log_text(log: &[LogEntry]) -> String {
        log.iter()
            .enumerate()
            .map(|(i, entry)| encode_line(&entry.clone().at(1.8e9 + i as f64)) + "\n")
            .collect()
    }

    fn chain_hashes(log: &[LogEntry]) -> HashSet<Hash> {
        log.iter().filter_map(|entry| entry.hash.clone()).collect()
    }

    /// A developer, watcher or downloader on the session, and what it was asked to do.
    struct Peer {
        machine: Developer,
        inbox: VecDeque<Vec<u8>>,
        log: Vec<LogEntry>,
        shown: Vec<u8>,
        chat: Vec<(Val, Val)>,
        bells: usize,
        warnings: Vec<Warning>,
        access: Vec<Access>,
    }

    /// A user with a toy shell, and a relay that keeps wire order and strips pointers, all in
    /// memory. A peer joining is replayed everything relayed so far, as the server does.
    struct Session {
        now: Duration,
        user: User,
        user_log: Vec<LogEntry>,
        user_inbox: VecDeque<Vec<u8>>,
        user_chat: Vec<(Val, Val)>,
        relayed: Vec<Vec<u8>>,
        pty: Vec<u8>,
        shell_line: Vec<u8>,
        shell_output: Vec<u8>,
        /// Whether [`Session::settle`] lets the shell answer.
        echo: bool,
        consent: Vec<ConsentRequest>,
        peers: Vec<Peer>,
    }

    impl Session {
        fn new() -> Self {
            let now = Duration::from_secs(1000);
            let (user, actions) = User::start([1; 32], now);
            let mut session = Self {
                now,
                user,
                user_log: Vec::new(),
                user_inbox: VecDeque::new(),
                user_chat: Vec::new(),
                relayed: Vec::new(),
                pty: Vec::new(),
                shell_line: Vec::new(),
                shell_output: b"$ ".to_vec(),
                echo: true,
                consent: Vec::new(),
                peers: Vec::new(),
            };
            session.user_actions(actions);
            session.output(usize::MAX);
            session
        }

        fn tick(&mut self) -> Duration {
            self.now += Duration::from_millis(10);
            self.now
        }

        fn relay(&mut self, message: &AnyMessage, from: Option<usize>) {
            let bytes = encode_message(message);
            self.relayed.push(bytes.clone());
            if from.is_some() {
                self.user_inbox.push_back(bytes.clone());
            }
            for (i, peer) in self.peers.iter_mut().enumerate() {
                if from != Some(i) {
                    peer.inbox.push_back(bytes.clone());
                }
            }
        }

        fn user_actions(&mut self, actions: Vec<UserAction>) {
            for action in actions {
                match action {
                    UserAction::Send(message) => self.relay(&message, None),
                    UserAction::Log(entry) => self.user_log.push(entry),
                    UserAction::WritePty(keys) => {
                        self.pty.extend_from_slice(&keys);
                        self.shell(&keys);
                    }
                    UserAction::AskConsent(request) => self.consent.push(request),
                    UserAction::Chat { sender, text } => self.user_chat.push((sender, text)),
                }
            }
        }

        /// Echoes keys; a line `echo X` prints X.
        fn shell(&mut self, keys: &[u8]) {
            for &key in keys {
                if key == b'\r' {
                    self.shell_output.extend_from_slice(b"\r\n");
                    if let Some(arg) = self.shell_line.strip_prefix(b"echo ") {
                        self.shell_output.extend_from_slice(arg);
                        self.shell_output.extend_from_slice(b"\r\n");
                    }
                    self.shell_output.extend_from_slice(b"$ ");
                    self.shell_line.clear();
                } else {
                    self.shell_line.push(key);
                    self.shell_output.push(key);
                }
            }
        }

        /// One PTY read of at most `n` bytes of the shell's output, if there is any.
        fn output(&mut self, n: usize) -> bool {
            if self.shell_output.is_empty() {
                return false;
            }
            let rest = self.shell_output.split_off(n.min(self.shell_output.len()));
            let data = std::mem::replace(&mut self.shell_output, rest);
            let now = self.tick();
            let actions = self.user.seen(&data, now);
            self.user_actions(actions);
            true
        }

        /// Output of a program that is not the shell's echo.
        fn print(&mut self, data: &[u8]) {
            let now = self.tick();
            let actions = self.user.seen(data, now);
            self.user_actions(actions);
        }

        fn peer_actions(&mut self, i: usize, actions: Vec<DeveloperAction>) {
            for action in actions {
                let peer = &mut self.peers[i];
                match action {
                    DeveloperAction::Send(message) => self.relay(&message, Some(i)),
                    DeveloperAction::Log(entry) => peer.log.push(entry),
                    DeveloperAction::Show(data) => peer.shown.extend_from_slice(&data),
                    DeveloperAction::Chat { sender, text } => peer.chat.push((sender, text)),
                    DeveloperAction::Bell => peer.bells += 1,
                    DeveloperAction::Access(access) => peer.access.push(access),
                    DeveloperAction::Warn(warning) => peer.warnings.push(warning),
                }
            }
        }

        fn join(&mut self, machine: Developer) -> usize {
            self.peers.push(Peer {
                machine,
                inbox: self.relayed.iter().cloned().collect(),
                log: Vec::new(),
                shown: Vec::new(),
                chat: Vec::new(),
                bells: 0,
                warnings: Vec::new(),
                access: Vec::new(),
            });
            self.peers.len() - 1
        }

        /// A developer that sends its key, bound to an identity by `gpg`.
        fn join_developer(&mut self, secret: [u8; 32], gpg: &dyn Fn(&[u8]) -> (Val, Val)) -> usize {
            let i = self.join(Developer::new(secret));
            let machine = &mut self.peers[i].machine;
            let (statement, export) = gpg(&machine.session_key_hash().unwrap());
            let actions = machine.send_session_key(statement, export).unwrap();
            self.peer_actions(i, actions);
            i
        }

        fn deliver_to_user(&mut self) -> bool {
            let Some(bytes) = self.user_inbox.pop_front() else {
                return false;
            };
            self.tick();
            let actions = self.user.receive(decode_message(&bytes).unwrap());
            self.user_actions(actions);
            true
        }

        fn deliver_to(&mut self, i: usize) -> bool {
            let Some(bytes) = self.peers[i].inbox.pop_front() else {
                return false;
            };
            let now = self.tick();
            let message = decode_message(&bytes).unwrap();
            let actions = self.peers[i].machine.receive(message, now).unwrap();
            self.peer_actions(i, actions);
            true
        }

        /// Delivers everything, the shell answering when `echo` is on.
        fn settle(&mut self) {
            loop {
                let mut progress = false;
                while self.deliver_to_user() {
                    progress = true;
                }
                if self.echo {
                    progress |= self.output(usize::MAX);
                }
                for i in 0..self.peers.len() {
                    while self.deliver_to(i) {
                        progress = true;
                    }
                }
                if !progress {
                    return;
                }
            }
        }

        fn answer(&mut self, yes: bool) {
            for request in std::mem::take(&mut self.consent) {
                let actions = self.user.consent(&request.key, yes).unwrap();
                self.user_actions(actions);
            }
        }

        fn type_keys(&mut self, i: usize, keys: &[u8]) {
            let now = self.tick();
            let actions = self.peers[i].machine.type_keys(keys, now).unwrap();
            self.peer_actions(i, actions);
        }

        fn rejections(&self) -> usize {
            self.user_log
                .iter()
                .filter(|entry| {
                    matches!(
                        &entry.message,
                        AnyMessage::User(Message::Control(Control {
                            control: ControlAction::EnteredRejected { .. },
                            ..
                        }))
                    )
                })
                .count()
        }

        /// Every log, the user's and each peer's, passes this crate's verifier.
        fn check_logs(&self) {
            verify(&log_text(&self.user_log), &mut AnyGpg).expect("the user's log");
            for (i, peer) in self.peers.iter().enumerate() {
                verify(&log_text(&peer.log), &mut AnyGpg)
                    .unwrap_or_else(|e| panic!("peer {i}'s log: {e}"));
            }
        }

        fn no_warnings(&self) {
            for peer in &self.peers {
                assert_eq!(peer.warnings, []);
            }
        }
    }

    /// A session with a prompt and one accepted developer.
    fn with_developer() -> Session {
        let mut session = Session::new();
        let developer = session.join_developer([2; 32], &fake_gpg);
        session.settle();
        assert_eq!(session.peers[developer].machine.access(), Access::Waiting);
        session.answer(true);
        session.settle();
        assert_eq!(session.peers[developer].access, [Access::ReadWrite]);
        session
    }

    #[test]
    fn a_developer_types_one_key_at_a_time_and_a_late_watcher_sees_it_all() {
        let mut session = with_developer();
        for key in b"echo hi\r" {
            session.type_keys(0, &[*key]);
            session.settle();
        }
        assert_eq!(session.pty, b"echo hi\r");
        assert!(session.peers[0].shown.ends_with(b"$ echo hi\r\nhi\r\n$ "));
        let actions = session.peers[0].machine.chat(b"dev", b"hello").unwrap();
        session.peer_actions(0, actions);
        let actions = session.user.chat(b"user", b"hi there");
        session.user_actions(actions);
        let watcher = session.join(Developer::watcher());
        session.settle();
        assert_eq!(session.user_chat, [(b"dev".to_vec(), b"hello".to_vec())]);
        assert_eq!(
            session.peers[0].chat,
            [(b"user".to_vec(), b"hi there".to_vec())]
        );
        assert_eq!(session.peers[watcher].chat.len(), 2);
        assert_eq!(session.peers[watcher].shown, session.peers[0].shown);
        assert_eq!(
            session.peers[watcher].machine.type_keys(b"x", session.now),
            Err(SendError::Watching)
        );
        assert_eq!(
            session.peers[watcher]
                .machine
                .send_session_key(Vec::new(), Vec::new()),
            Err(SendError::Watching)
        );
        assert_eq!(session.rejections(), 0);
        assert_eq!(session.peers[0].bells, 0);
        session.no_warnings();
        let chain = chain_hashes(&session.user_log);
        assert_eq!(chain.len(), 1 + 1 + 8 + 8);
        assert_eq!(chain_hashes(&session.peers[0].log), chain);
        assert_eq!(chain_hashes(&session.peers[watcher].log), chain);
        session.check_logs();
    }

    #[test]
    fn typeahead_is_accepted_while_the_echo_lags() {
        let mut session = with_developer();
        session.echo = false;
        // A burst in one chunk, echoed in two reads the developer has not seen yet.
        session.type_keys(0, b"a long command");
        session.deliver_to_user();
        assert_eq!(session.pty, b"a long command");
        session.output(6);
        session.output(usize::MAX);
        session.type_keys(0, b"\r");
        session.deliver_to_user();
        assert_eq!(session.pty, b"a long command\r");
        session.echo = true;
        session.settle();
        // One key at a time, each echoed before the developer sees the echo of the last. (The
        // echo heuristic takes a key's echo to be the key, so this works for printable keys.)
        session.echo = false;
        for key in b"ls -l" {
            session.type_keys(0, &[*key]);
            session.deliver_to_user();
            session.output(usize::MAX);
        }
        session.echo = true;
        session.settle();
        session.type_keys(0, b"\r");
        session.settle();
        assert_eq!(session.pty, b"a long command\rls -l\r");
        assert_eq!(session.rejections(), 0);
        assert_eq!(session.peers[0].bells, 0);
        session.no_warnings();
        assert!(
            session.peers[0]
                .shown
                .ends_with(b"$ a long command\r\n$ ls -l\r\n$ ")
        );
        session.check_logs();
    }

    #[test]
    fn racing_developers_are_serialised_and_the_loser_hears_a_bell() {
        let mut session = Session::new();
        let a = session.join_developer([2; 32], &fake_gpg);
        let b = session.join_developer([3; 32], &fake_gpg);
        let watcher = session.join(Developer::watcher());
        session.settle();
        assert_eq!(session.consent.len(), 2);
        session.answer(true);
        session.settle();
        session.type_keys(a, b"a");
        session.type_keys(b, b"b");
        session.settle();
        assert_eq!(session.pty, b"a");
        assert_eq!(session.rejections(), 1);
        assert_eq!((session.peers[a].bells, session.peers[b].bells), (0, 1));
        // The loser resynchronised: its next key goes through, and so do the winner's.
        session.type_keys(b, b"c");
        session.settle();
        session.type_keys(a, b"d");
        session.settle();
        assert_eq!(session.pty, b"acd");
        assert_eq!(session.rejections(), 1);
        // Again, both naming the last accepted key: the winner's key drops it from the
        // backlog, and the loser still gets its rejection.
        session.type_keys(b, b"e");
        session.type_keys(a, b"f");
        session.settle();
        assert_eq!(session.pty, b"acde");
        assert_eq!(session.rejections(), 2);
        assert_eq!((session.peers[a].bells, session.peers[b].bells), (1, 1));
        session.no_warnings();
        // Everyone saw every activity, the rejected one included.
        let chain = chain_hashes(&session.user_log);
        for peer in [a, b, watcher] {
            assert_eq!(chain_hashes(&session.peers[peer].log), chain, "peer {peer}");
        }
        session.check_logs();
    }

    #[test]
    fn output_streaming_while_a_key_is_in_flight_costs_the_key_not_the_session() {
        let mut session = with_developer();
        session.type_keys(0, b"a");
        session.settle();
        session.print(b"x\r\n");
        session.settle();
        // The user prints again before the next key arrives, naming the last accepted key as
        // prevEntered while ours is in flight: the real client exits here.
        session.type_keys(0, b"b");
        session.print(b"y\r\n");
        while session.deliver_to(0) {}
        session.no_warnings();
        session.settle();
        assert_eq!(session.rejections(), 1);
        assert_eq!(session.peers[0].bells, 1);
        session.type_keys(0, b"c");
        session.settle();
        assert_eq!(session.pty, b"ac");
        assert_eq!(session.rejections(), 1);
        session.no_warnings();
        session.check_logs();
    }

    #[test]
    fn a_rejected_developer_watches_read_only() {
        let mut session = Session::new();
        session.join_developer([2; 32], &fake_gpg);
        session.settle();
        session.answer(false);
        session.settle();
        let peer = &mut session.peers[0];
        assert_eq!(peer.access, [Access::ReadOnly]);
        assert_eq!(peer.machine.access(), Access::ReadOnly);
        assert_eq!(
            peer.machine.type_keys(b"x", Duration::ZERO),
            Err(SendError::ReadOnly)
        );
        assert_eq!(peer.machine.chat(b"d", b"x"), Err(SendError::ReadOnly));
        assert_eq!(
            peer.machine.send_session_key(Vec::new(), Vec::new()),
            Err(SendError::ReadOnly)
        );
        session.print(b"still here");
        session.settle();
        assert!(session.peers[0].shown.ends_with(b"still here"));
        assert!(session.user_log.iter().any(|entry| matches!(
            &entry.message,
            AnyMessage::User(Message::Control(Control {
                control: ControlAction::SessionKeyRejected(_),
                ..
            }))
        )));
        session.no_warnings();
        session.check_logs();
    }

    #[test]
    fn keys_before_consent_and_a_second_key_are_refused() {
        let mut session = Session::new();
        let i = session.join_developer([2; 32], &fake_gpg);
        let machine = &mut session.peers[i].machine;
        assert_eq!(
            machine.type_keys(b"x", Duration::ZERO),
            Err(SendError::NotGranted)
        );
        assert_eq!(
            machine.send_session_key(Vec::new(), Vec::new()),
            Err(SendError::KeyAlreadySent)
        );
    }

    /// An Entered of a key nobody accepted, chained after the user's newest output.
    fn stranger_entered(session: &Session) -> AnyMessage {
        let stranger = SessionKey::from_secret([9; 32]);
        let mut entered = Activity {
            activity: Entered {
                entered_data: b"rm -rf ~\r".to_vec(),
                echo_data: Vec::new(),
            },
            prev_activity: session.user_log.iter().rev().find_map(|e| e.hash.clone()),
            prev_entered: None,
            elapsed_time: 0.0,
            signature: Signature::Ed25519(Vec::new()),
        };
        stranger.sign_activity(&mut entered);
        AnyMessage::Developer(Message::Activity(entered))
    }

    #[test]
    fn a_message_signed_by_an_unknown_key_is_dropped() {
        let mut session = with_developer();
        let watcher = session.join(Developer::watcher());
        session.settle();
        let user_log = session.user_log.len();
        let entered = stranger_entered(&session);
        session.relay(&entered, Some(usize::MAX));
        session.settle();
        assert_eq!(session.pty, b"");
        assert_eq!(session.user_log.len(), user_log);
        for peer in [0, watcher] {
            assert_eq!(session.peers[peer].warnings, [Warning::UnverifiedDeveloper]);
        }
        session.type_keys(0, b"x");
        session.settle();
        assert_eq!(session.pty, b"x");
        session.check_logs();
    }

    /// A Seen signed by `key` with these pointers.
    fn seen_signed(key: &SessionKey, data: &[u8], pointers: Pointers) -> AnyMessage {
        let mut seen = Activity {
            activity: Seen {
                seen_data: data.to_vec(),
            },
            prev_activity: pointers.0,
            prev_entered: pointers.1,
            elapsed_time: 0.5,
            signature: Signature::Ed25519(Vec::new()),
        };
        key.sign_activity(&mut seen);
        AnyMessage::User(Message::Activity(seen))
    }

    #[test]
    fn an_illegal_seen_is_a_warning_and_the_next_seen_resynchronises() {
        let mut session = with_developer();
        let start = session.user_log[1].hash.clone();
        assert!(start.is_some());
        // Signed by the user but chained after the start, skipping the prompt.
        let forged = seen_signed(&SessionKey::from_secret([1; 32]), b"forged", (start, None));
        let bytes = encode_message(&forged);
        session.peers[0].inbox.push_back(bytes);
        session.deliver_to(0);
        assert_eq!(session.peers[0].warnings, [Warning::IllegalSeen]);
        assert!(session.peers[0].shown.ends_with(b"forged"));
        // Not signed by the user at all: dropped.
        let logged = session.peers[0].log.len();
        let stranger = seen_signed(&SessionKey::from_secret([9; 32]), b"evil", (None, None));
        session.peers[0].inbox.push_back(encode_message(&stranger));
        session.deliver_to(0);
        assert_eq!(session.peers[0].log.len(), logged);
        // The user's real output follows its own chain: taken, with a warning, as the new view.
        session.print(b"real");
        session.settle();
        assert_eq!(
            session.peers[0].warnings,
            [
                Warning::IllegalSeen,
                Warning::UnverifiedUser,
                Warning::IllegalSeen
            ]
        );
        session.type_keys(0, b"x");
        session.settle();
        assert_eq!(session.pty, b"x");
        assert_eq!(session.rejections(), 0);
        session.check_logs();
    }

    fn wire(line: &str) -> AnyMessage {
        decode_message(&encode_message(&decode_line(line).unwrap().message)).unwrap()
    }

    #[test]
    fn the_start_must_be_the_users_key_and_first_output() {
        let appendix_a: Vec<&str> = include_str!("../testdata/appendix-a.log").lines().collect();
        let controls: Vec<&str> = include_str!("../testdata/appendix-b-controls.log")
            .lines()
            .collect();
        let mut watcher = Developer::watcher();
        assert_eq!(
            watcher.receive(wire(appendix_a[1]), Duration::ZERO),
            Err(StartError::NoUserKey)
        );
        assert_eq!(
            watcher.receive(wire(controls[1]), Duration::ZERO),
            Err(StartError::NoUserKey)
        );
        let AnyMessage::User(Message::Control(mut key)) = wire(appendix_a[0]) else {
            panic!()
        };
        key.signature = Signature::Ed25519(vec![0; 64]);
        assert_eq!(
            watcher.receive(AnyMessage::User(Message::Control(key)), Duration::ZERO),
            Err(StartError::BadUserKey)
        );
        watcher.receive(wire(controls[0]), Duration::ZERO).unwrap();
        assert_eq!(
            watcher.receive(wire(controls[2]), Duration::ZERO),
            Err(StartError::NoStartSeen)
        );
        // Appendix A's first output, under appendix B's user key.
        assert_eq!(
            watcher.receive(wire(appendix_a[1]), Duration::ZERO),
            Err(StartError::BadStartSeen)
        );
        let mut watcher = Developer::watcher();
        watcher
            .receive(wire(appendix_a[0]), Duration::ZERO)
            .unwrap();
        let with_pointers = decode_line(appendix_a[2]).unwrap().message;
        assert_eq!(
            watcher.receive(with_pointers, Duration::ZERO),
            Err(StartError::NoStartSeen)
        );
    }

    #[test]
    fn a_real_user_log_is_followed_step_by_step() {
        let text = include_str!("../testdata/appendix-a.log");
        let mut watcher = Developer::watcher();
        let mut log = Vec::new();
        for line in text.lines() {
            for action in watcher.receive(wire(line), Duration::ZERO).unwrap() {
                if let DeveloperAction::Log(entry) = action {
                    log.push(entry);
                }
            }
        }
        // The restored log is the user's, pointers and hashes included.
        let original: Vec<LogEntry> = text
            .lines()
            .map(|line| {
                let line = decode_line(line).unwrap();
                LogEntry {
                    message: line.message,
                    hash: line.hash,
                }
            })
            .collect();
        assert_eq!(log, original);
        // An Entered of another session: no key here signed it.
        let entered = include_str!("../testdata/developer-entered.log");
        assert_eq!(
            watcher.receive(wire(entered), Duration::ZERO).unwrap(),
            [DeveloperAction::Warn(Warning::UnverifiedDeveloper)]
        );
    }

    /// The logs both machines write, checked by the real `debug-me --verify` (which must be
    /// installed: the test fails without it), with developer keys bound by the real `gpg`.
    mod real_debug_me {
        use std::fs;
        use std::os::unix::fs::PermissionsExt;
        use std::path::PathBuf;
        use std::process::Command;

        use super::*;

        const DEBUG_ME: &str = "/usr/bin/debug-me";

        /// A throwaway GnuPG home, removed (its agent stopped) when dropped.
        struct GpgHome(PathBuf);

        impl GpgHome {
            fn new(name: &str) -> Self {
                let path = std::env::temp_dir()
                    .join(format!("kanava-debugme-{name}-{}", std::process::id()));
                let _ = fs::remove_dir_all(&path);
                fs::create_dir_all(&path).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
                Self(path)
            }

            fn command(&self, program: &str) -> Command {
                let mut command = Command::new(program);
                command.env("GNUPGHOME", &self.0);
                command
            }

            fn gpg(&self, args: &[&str]) -> Vec<u8> {
                let output = self
                    .command("gpg")
                    .args(["--batch", "--quiet"])
                    .args(args)
                    .output()
                    .expect("gpg runs");
                assert!(
                    output.status.success(),
                    "gpg {args:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                output.stdout
            }

            /// Binds a session key to this home's GnuPG key, as spec 9 says a developer does.
            fn bind(&self, key_hash: &[u8]) -> (Val, Val) {
                let file = self.0.join("statement");
                fs::write(&file, key_hash).unwrap();
                let statement =
                    self.gpg(&["--output", "-", "--clearsign", "-a", file.to_str().unwrap()]);
                let export = self.gpg(&[
                    "-a",
                    "--export-options",
                    "no-export-attributes,export-minimal",
                    "--export",
                    "dev@example.org",
                ]);
                (statement, export)
            }

            fn debug_me_verify(&self, name: &str, log: &[LogEntry]) {
                let path = self.0.join(format!("{name}.log"));
                fs::write(&path, log_text(log)).unwrap();
                let output = self
                    .command(DEBUG_ME)
                    .arg("--verify")
                    .arg(&path)
                    .output()
                    .unwrap_or_else(|e| panic!("{DEBUG_ME} must be installed: {e}"));
                let said = String::from_utf8_lossy(&output.stdout).into_owned()
                    + &String::from_utf8_lossy(&output.stderr);
                assert!(
                    output.status.success() && said.contains("Log file verified"),
                    "debug-me --verify on the {name}'s log ({} lines): {said}",
                    log.len()
                );
            }
        }

        impl Drop for GpgHome {
            fn drop(&mut self) {
                let _ = self
                    .command("gpgconf")
                    .args(["--kill", "gpg-agent"])
                    .status();
                let _ = fs::remove_dir_all(&self.0);
            }
        }

        #[test]
        fn real_debug_me_verifies_the_logs() {
            let developer_home = GpgHome::new("developer");
            developer_home.gpg(&[
                "--passphrase",
                "",
                "--quick-gen-key",
                "Dev <dev@example.org>",
                "ed25519",
                "sign",
                "never",
            ]);
            let bind = |key_hash: &[u8]| developer_home.bind(key_hash);
            let mut session = Session::new();
            let a = session.join_developer([2; 32], &bind);
            let b = session.join_developer([3; 32], &bind);
            let watcher = session.join(Developer::watcher());
            session.settle();
            session.answer(true);
            session.settle();
            for key in b"echo hi\r" {
                session.type_keys(a, &[*key]);
                session.settle();
            }
            session.echo = false;
            session.type_keys(a, b"echo a long command");
            session.deliver_to_user();
            session.output(6);
            session.output(usize::MAX);
            session.type_keys(a, b"\r");
            session.deliver_to_user();
            session.echo = true;
            session.settle();
            session.type_keys(a, b"x");
            session.type_keys(b, b"y");
            session.settle();
            let actions = session.peers[b]
                .machine
                .chat(b"dev", b"lost the race")
                .unwrap();
            session.peer_actions(b, actions);
            let actions = session.user.chat(b"user", b"bye");
            session.user_actions(actions);
            let now = session.tick();
            let actions = session.user.end(0, now);
            session.user_actions(actions);
            session.settle();
            assert_eq!(session.pty, b"echo hi\recho a long command\rx");
            assert_eq!(session.rejections(), 1);
            assert!(
                session.peers[watcher]
                    .shown
                    .ends_with(b"\r\n** debug-me session ended (0)\r\n")
            );
            session.check_logs();
            let verifier = GpgHome::new("verifier");
            verifier.debug_me_verify("user", &session.user_log);
            for (name, peer) in [
                ("developer", a),
                ("second developer", b),
                ("watcher", watcher),
            ] {
                verifier.debug_me_verify(name, &session.peers[peer].log);
            }
            // A stand-in GnuPG statement is refused: the check is real.
            let mut unbound = Session::new();
            unbound.join_developer([2; 32], &fake_gpg);
            unbound.settle();
            verifier
                .command(DEBUG_ME)
                .arg("--verify")
                .arg({
                    let path = verifier.0.join("unbound.log");
                    fs::write(&path, log_text(&unbound.user_log)).unwrap();
                    path
                })
                .output()
                .map(|output| assert!(!output.status.success()))
                .unwrap();
        }
    }
}
