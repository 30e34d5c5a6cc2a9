//! Synthetic session logs signed with fixed keys: a session shaped like a real one, in the
//! user's or the server's flavour, and logs crafted against the verifier (a misordered tail,
//! pointers that only a search finds, many keys). The tests and benchmarks of this crate and
//! of others, and the fuzz seeds, build their logs here, so that they all check the same ones.

use crate::hash::{self, ActivityKind};
use crate::json::encode_line;
use crate::model::{
    Activity, AnyMessage, Control, ControlAction, Entered, Hash, LogLine, Message, PerhapsSigned,
    Seen, Signature,
};
use crate::recover::{Pointers, Side};
use crate::sign::SessionKey;

/// How a log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// As the user or a developer writes it: the pointers in each line, and `loggedHash` the
    /// chain hash.
    User,
    /// As the server writes it: the pointers null (the wire drops them), and `loggedHash` the
    /// hash of the activity without them.
    Server,
}

/// The fixed session key numbered `n` (its secret is 32 bytes of `n`).
pub fn key(n: u8) -> SessionKey {
    SessionKey::from_secret([n; 32])
}

/// A log being written, one message at a time.
pub struct SyntheticLog {
    flavour: Flavour,
    lines: Vec<LogLine>,
    newest: Option<Hash>,
    last_entered: Option<Hash>,
}

impl SyntheticLog {
    /// An empty log of this flavour.
    pub fn new(flavour: Flavour) -> Self {
        Self {
            flavour,
            lines: Vec::new(),
            newest: None,
            last_entered: None,
        }
    }

    /// Lines so far.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether no line was written.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The pointers an honest peer puts on its next activity here: the newest activity and
    /// the newest Entered.
    pub fn honest_pointers(&self) -> Pointers {
        (self.newest.clone(), self.last_entered.clone())
    }

    /// Appends a control message from `side`, signed by `signer`.
    pub fn control(&mut self, side: Side, signer: &SessionKey, action: ControlAction) {
        let mut control = Control {
            control: action,
            signature: Signature::Other(Vec::new()),
        };
        signer.sign_control(&mut control);
        let message = match side {
            Side::User => AnyMessage::User(Message::Control(control)),
            Side::Developer => AnyMessage::Developer(Message::Control(control)),
        };
        self.push(message, None);
    }

    /// Appends `key`'s SessionKey message (not signed with GnuPG), from `side`.
    pub fn session_key(&mut self, side: Side, key: &SessionKey) {
        let action =
            ControlAction::SessionKey(PerhapsSigned::UnSigned(key.public()), b"1".to_vec());
        self.control(side, key, action);
    }

    /// Appends a Seen signed by `signer` with `pointers`; returns its chain hash.
    pub fn seen(
        &mut self,
        signer: &SessionKey,
        data: &[u8],
        pointers: Pointers,
        elapsed: f64,
    ) -> Hash {
        let seen = Seen {
            seen_data: data.to_vec(),
        };
        let (activity, logged, chain) = self.signed(signer, seen, pointers, elapsed);
        self.push(AnyMessage::User(Message::Activity(activity)), Some(logged));
        chain
    }

    /// Appends an Entered signed by `signer` with `pointers`; returns its chain hash.
    pub fn entered(
        &mut self,
        signer: &SessionKey,
        data: &[u8],
        pointers: Pointers,
        elapsed: f64,
    ) -> Hash {
        let entered = Entered {
            entered_data: data.to_vec(),
            echo_data: Vec::new(),
        };
        let (activity, logged, chain) = self.signed(signer, entered, pointers, elapsed);
        self.push(
            AnyMessage::Developer(Message::Activity(activity)),
            Some(logged),
        );
        self.last_entered = Some(chain.clone());
        chain
    }

    /// The activity as this flavour writes it, its `loggedHash` and its chain hash.
    fn signed<A: ActivityKind>(
        &mut self,
        signer: &SessionKey,
        activity: A,
        pointers: Pointers,
        elapsed: f64,
    ) -> (Activity<A>, Hash, Hash) {
        let mut activity = Activity {
            activity,
            prev_activity: pointers.0,
            prev_entered: pointers.1,
            elapsed_time: elapsed,
            signature: Signature::Other(Vec::new()),
        };
        signer.sign_activity(&mut activity);
        let chain = hash::activity(&activity);
        if self.flavour == Flavour::Server {
            activity.prev_activity = None;
            activity.prev_entered = None;
        }
        let logged = hash::activity(&activity);
        self.newest = Some(chain.clone());
        (activity, logged, chain)
    }

    fn push(&mut self, message: AnyMessage, hash: Option<Hash>) {
        let timestamp = 1.7e9 + self.lines.len() as f64;
        self.lines.push(LogLine {
            message,
            hash,
            timestamp,
        });
    }

    /// Swaps lines `a` and `b` (1-based), as a writer that logs out of order does.
    pub fn swap(&mut self, a: usize, b: usize) {
        self.lines.swap(a - 1, b - 1);
    }

    /// Line `n` (1-based), to tamper with.
    pub fn line_mut(&mut self, n: usize) -> &mut LogLine {
        &mut self.lines[n - 1]
    }

    /// The log's text.
    pub fn text(&self) -> String {
        self.lines.iter().map(|l| encode_line(l) + "\n").collect()
    }
}

/// A session of `lines` lines shaped like a real one: the user's key, a developer's key and
/// its acceptance, then the developer typing a key at a time and the shell echoing it, so
/// that Seen and Entered alternate and `prevEntered` moves along.
pub fn typing_session(lines: usize, flavour: Flavour) -> SyntheticLog {
    let (user, developer) = (key(1), key(2));
    let mut log = SyntheticLog::new(flavour);
    log.session_key(Side::User, &user);
    log.session_key(Side::Developer, &developer);
    log.control(
        Side::User,
        &user,
        ControlAction::SessionKeyAccepted(developer.public()),
    );
    while log.len() < lines {
        let pointers = log.honest_pointers();
        if log.len() % 2 == 1 && pointers.0.is_some() {
            log.entered(&developer, b"k", pointers, 0.15);
        } else {
            log.seen(&user, b"k", pointers, 0.002);
        }
    }
    log
}

/// A user's log of `lines` lines (at least 5) whose last output is logged after the "session
/// ended" line although it is chained before it, as the real debug-me sometimes writes it:
/// line `lines - 1` names line `lines`, an invalid hash chain.
pub fn misordered_tail(lines: usize) -> SyntheticLog {
    let user = key(1);
    let mut log = typing_session(lines - 2, Flavour::User);
    log.seen(&user, b"last output\r\n", log.honest_pointers(), 0.01);
    let ended = b"\r\n** debug-me session ended (0)\r\n";
    log.seen(&user, ended, log.honest_pointers(), 0.02);
    log.swap(lines - 1, lines);
    log
}

/// A log of the user's output only, `lines` lines, in which every Seen names the activity
/// two before it rather than the one before it: no likely pair explains a line, so every
/// line needs a search (a short one: the pair is among the first of the window).
pub fn skipping_chain(lines: usize, flavour: Flavour) -> SyntheticLog {
    let user = key(1);
    let mut log = SyntheticLog::new(flavour);
    log.session_key(Side::User, &user);
    let mut chain: Vec<Hash> = Vec::new();
    while log.len() < lines {
        let previous = chain.len().checked_sub(2).map(|at| chain[at].clone());
        let data = format!("{}\r\n", log.len());
        chain.push(log.seen(&user, data.as_bytes(), (previous, None), 0.001));
    }
    log
}

/// A user's log of `lines` lines: half of them session keys of the user's side, then
/// output, each line signed by the next key, oldest first. Every key is a candidate signer
/// of every line.
pub fn many_keys(lines: usize) -> SyntheticLog {
    let keys: Vec<SessionKey> = (0..(lines / 2).max(1))
        .map(|n| {
            let mut secret = [7; 32];
            secret[..8].copy_from_slice(&(n as u64).to_le_bytes());
            SessionKey::from_secret(secret)
        })
        .collect();
    let mut log = SyntheticLog::new(Flavour::User);
    for key in &keys {
        log.session_key(Side::User, key);
    }
    let mut signers = keys.iter().cycle();
    while log.len() < lines {
        let signer = signers.next().expect("a cycle of at least one key");
        log.seen(signer, b"x", log.honest_pointers(), 0.001);
    }
    log
}
