//! Who is connected over SSH right now, and the state that lives as long as the server does:
//! away messages, ignore lists, mutes, and whom to `/reply` to. Shared by every connection.
//! It is SSH's sink of the hub's [`Chat`](kanava_hub::Chat): private messages and room notices
//! from every transport reach the SSH sessions through it.
//!
//! The lock is never held across an `.await`; notices go to sessions through bounded queues.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use kanava_core::{ChannelName, Nick, PrivateMessage};
use kanava_hub::{ChatSink, RoomNotice};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::session::{label, topic_changed};

/// Notices a session can hold before further ones are dropped.
const NOTICE_QUEUE: usize = 256;

/// Something for one session to show, beyond its room's traffic.
#[derive(Debug, Clone)]
pub(crate) enum Notice {
    /// A line from the server (already sanitised), such as an announcement.
    Info(String),
    /// A private message to or from this session's user.
    Private(PrivateMessage),
    /// The session is ended by an operator, for this reason.
    Kicked(String),
}

/// How a session is connected, for `/whois`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The full-screen chat.
    Terminal,
    /// The line interface (`ssh -T`).
    Line,
    /// An exec command (`ssh host tail -f …`).
    Exec,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Terminal => "terminal",
            Mode::Line => "line",
            Mode::Exec => "exec",
        }
    }
}

struct Session {
    nick: Nick,
    fingerprint: String,
    mode: Mode,
    room: Option<ChannelName>,
    since_ms: u64,
    notices: Option<mpsc::Sender<Notice>>,
    cancel: CancellationToken,
}

#[derive(Default)]
struct State {
    next_id: u64,
    sessions: HashMap<u64, Session>,
    /// Away reasons by name key.
    away: HashMap<String, String>,
    /// Ignored names (keys) by the ignoring name's key.
    ignores: HashMap<String, BTreeSet<String>>,
    /// Muted name keys.
    muted: HashSet<String>,
    /// Who last sent each name (key) a private message.
    last_sender: HashMap<String, Nick>,
}

/// The registry. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Directory(Arc<Mutex<State>>);

/// A session's place in the directory; dropping it removes the session.
pub(crate) struct Registration {
    directory: Directory,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.directory.lock().sessions.remove(&self.id);
    }
}

impl Registration {
    /// Records that the session is now in `room`.
    pub(crate) fn moved_to(&self, room: &ChannelName) {
        if let Some(session) = self.directory.lock().sessions.get_mut(&self.id) {
            session.room = Some(room.clone());
        }
    }
}

/// What `/whois` shows about a name's live sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Presence {
    /// Earliest start of a session, in Unix ms.
    pub(crate) since_ms: u64,
    /// One `mode in #room` per session.
    pub(crate) sessions: Vec<String>,
    /// Fingerprints of the keys the sessions logged in with.
    pub(crate) keys: BTreeSet<String>,
}

impl Directory {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session; those with a `Mode` that shows notices get a queue of them.
    pub(crate) fn register(
        &self,
        nick: &Nick,
        fingerprint: &str,
        mode: Mode,
        cancel: CancellationToken,
        now_ms: u64,
    ) -> (Registration, mpsc::Receiver<Notice>) {
        let (tx, rx) = mpsc::channel(NOTICE_QUEUE);
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.sessions.insert(
            id,
            Session {
                nick: nick.clone(),
                fingerprint: fingerprint.to_owned(),
                mode,
                room: None,
                since_ms: now_ms,
                notices: (mode != Mode::Exec).then_some(tx),
                cancel,
            },
        );
        drop(state);
        let registration = Registration {
            directory: self.clone(),
            id,
        };
        (registration, rx)
    }

    /// Queues `notice` for every session of `nick` that shows notices; says how many took it.
    pub(crate) fn notify(&self, nick: &Nick, notice: &Notice) -> usize {
        self.lock()
            .sessions
            .values()
            .filter(|s| &s.nick == nick)
            .filter_map(|s| s.notices.as_ref())
            .filter(|tx| tx.try_send(notice.clone()).is_ok())
            .count()
    }

    /// Queues `notice` for every session in `room`.
    pub(crate) fn notify_room(&self, room: &ChannelName, notice: &Notice) {
        for session in self.lock().sessions.values() {
            if session.room.as_ref() == Some(room)
                && let Some(tx) = &session.notices
            {
                let _ = tx.try_send(notice.clone());
            }
        }
    }

    /// Ends every session of `nick`: those that show notices are told why and end themselves,
    /// the others are stopped. Returns how many sessions there were.
    pub(crate) fn kick(&self, nick: &Nick, reason: &str) -> usize {
        let state = self.lock();
        let mut count = 0;
        for session in state.sessions.values().filter(|s| &s.nick == nick) {
            count += 1;
            let told = session
                .notices
                .as_ref()
                .is_some_and(|tx| tx.try_send(Notice::Kicked(reason.to_owned())).is_ok());
            if !told {
                session.cancel.cancel();
            }
        }
        count
    }

    /// Whether `nick` has a session here.
    pub(crate) fn has_session(&self, nick: &Nick) -> bool {
        self.lock().sessions.values().any(|s| &s.nick == nick)
    }

    /// The live sessions of `nick`, if any.
    pub(crate) fn presence(&self, nick: &Nick) -> Option<Presence> {
        let state = self.lock();
        let mut mine: Vec<&Session> = state
            .sessions
            .values()
            .filter(|s| &s.nick == nick)
            .collect();
        mine.sort_by_key(|s| s.since_ms);
        let first = mine.first()?;
        Some(Presence {
            since_ms: first.since_ms,
            sessions: mine
                .iter()
                .map(|s| match &s.room {
                    Some(room) => format!("{} in #{}", s.mode.label(), label(room)),
                    None => s.mode.label().to_owned(),
                })
                .collect(),
            keys: mine.iter().map(|s| s.fingerprint.clone()).collect(),
        })
    }

    /// Sets or clears (`None`) the away reason of `nick`.
    pub(crate) fn set_away(&self, nick: &Nick, reason: Option<String>) {
        let mut state = self.lock();
        match reason {
            Some(reason) => state.away.insert(nick.key(), reason),
            None => state.away.remove(&nick.key()),
        };
    }

    /// The away reason of `nick`.
    pub(crate) fn away(&self, nick: &Nick) -> Option<String> {
        self.lock().away.get(&nick.key()).cloned()
    }

    /// Makes `nick` ignore (or stop ignoring) `other`; says whether anything changed.
    pub(crate) fn set_ignore(&self, nick: &Nick, other: &Nick, ignore: bool) -> bool {
        let mut state = self.lock();
        if ignore {
            return state
                .ignores
                .entry(nick.key())
                .or_default()
                .insert(other.key());
        }
        let Some(list) = state.ignores.get_mut(&nick.key()) else {
            return false;
        };
        let removed = list.remove(&other.key());
        if list.is_empty() {
            // No empty lists: `ignores` answers at once while nobody ignores anyone.
            state.ignores.remove(&nick.key());
        }
        removed
    }

    /// Whom `nick` ignores (name keys, sorted).
    pub(crate) fn ignored(&self, nick: &Nick) -> Vec<String> {
        self.lock()
            .ignores
            .get(&nick.key())
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `nick` ignores the sender `uid` (compared case-insensitively). Asked for every
    /// message each session shows, so it allocates nothing while nobody ignores anyone.
    pub(crate) fn ignores(&self, nick: &Nick, uid: &str) -> bool {
        let state = self.lock();
        !state.ignores.is_empty()
            && state
                .ignores
                .get(&nick.key())
                .is_some_and(|l| l.iter().any(|k| k.eq_ignore_ascii_case(uid)))
    }

    /// Toggles the mute of `nick`; returns whether it is now muted.
    pub(crate) fn toggle_mute(&self, nick: &Nick) -> bool {
        let mut state = self.lock();
        if state.muted.remove(&nick.key()) {
            false
        } else {
            state.muted.insert(nick.key())
        }
    }

    /// Whether `nick` is muted.
    pub(crate) fn muted(&self, nick: &Nick) -> bool {
        self.lock().muted.contains(&nick.key())
    }

    /// Records that `from` sent `to` a private message, for `/reply`.
    pub(crate) fn set_last_sender(&self, to: &Nick, from: &Nick) {
        self.lock().last_sender.insert(to.key(), from.clone());
    }

    /// Who last sent `nick` a private message.
    pub(crate) fn last_sender(&self, nick: &Nick) -> Option<Nick> {
        self.lock().last_sender.get(&nick.key()).cloned()
    }
}

impl ChatSink for Directory {
    fn private(&self, message: &PrivateMessage) -> bool {
        let notice = Notice::Private(message.clone());
        let seen = !self.ignores(&message.to, message.from.as_str())
            && self.notify(&message.to, &notice) > 0;
        // Every session of the sender shows the message, the one that sent it included.
        if message.from != message.to {
            self.notify(&message.from, &notice);
        }
        seen
    }

    fn online(&self, nick: &Nick) -> bool {
        self.has_session(nick)
    }

    fn room_notice(&self, room: &ChannelName, notice: &RoomNotice) {
        let text = match notice {
            RoomNotice::Topic(topic) => topic_changed(topic),
            RoomNotice::Info(text) => text.clone(),
        };
        self.notify_room(room, &Notice::Info(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Nick {
        Nick::new(s).unwrap()
    }

    #[tokio::test]
    async fn notices_reach_every_session_of_a_name_and_kicks_end_them() {
        let directory = Directory::default();
        let (a1, mut rx1) =
            directory.register(&n("a"), "fp", Mode::Terminal, CancellationToken::new(), 5);
        let (_a2, mut rx2) =
            directory.register(&n("A"), "fp", Mode::Line, CancellationToken::new(), 3);
        let exec_cancel = CancellationToken::new();
        let (_a3, _) = directory.register(&n("a"), "fp", Mode::Exec, exec_cancel.clone(), 9);
        a1.moved_to(&ChannelName::new("dev").unwrap());
        assert_eq!(directory.notify(&n("a"), &Notice::Info("x".into())), 2);
        assert!(matches!(rx1.recv().await, Some(Notice::Info(_))));
        assert!(matches!(rx2.recv().await, Some(Notice::Info(_))));
        let presence = directory.presence(&n("a")).unwrap();
        assert_eq!(presence.since_ms, 3);
        assert_eq!(presence.sessions, ["line", "terminal in #dev", "exec"]);
        assert_eq!(directory.kick(&n("a"), "bye"), 3);
        assert!(matches!(rx1.recv().await, Some(Notice::Kicked(r)) if r == "bye"));
        assert!(exec_cancel.is_cancelled());
        drop(a1);
        assert_eq!(directory.presence(&n("a")).unwrap().sessions.len(), 2);
        assert!(directory.presence(&n("b")).is_none());
    }

    #[test]
    fn ignores_mutes_and_away() {
        let directory = Directory::default();
        assert!(directory.set_ignore(&n("a"), &n("Eve"), true));
        assert!(!directory.set_ignore(&n("a"), &n("eve"), true));
        assert!(directory.ignores(&n("A"), "EVE"));
        assert_eq!(directory.ignored(&n("a")), ["eve"]);
        assert!(directory.set_ignore(&n("a"), &n("eve"), false));
        assert!(!directory.ignores(&n("a"), "eve"));
        assert!(directory.lock().ignores.is_empty(), "no empty list is kept");
        assert!(!directory.set_ignore(&n("a"), &n("eve"), false));
        assert!(directory.toggle_mute(&n("m")));
        assert!(directory.muted(&n("M")));
        assert!(!directory.toggle_mute(&n("m")));
        directory.set_away(&n("a"), Some("lunch".into()));
        assert_eq!(directory.away(&n("A")).as_deref(), Some("lunch"));
        directory.set_away(&n("a"), None);
        assert_eq!(directory.away(&n("a")), None);
    }
}
