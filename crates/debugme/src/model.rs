//! debug-me's data model (protocol 1): what a session log line and a wire message hold.
//!
//! Names follow the protocol's constructors, because the hashes are over those names
//! (`T("Seen", …)`), and the JSON log spells them out.

/// Arbitrary bytes (debug-me's `Val`).
pub type Val = Vec<u8>;

/// The hash algorithms a [`Hash`] may name; only SHA-512 is ever produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashMethod {
    /// SHA-512.
    Sha512,
    /// SHA-3 (accepted when read, never produced).
    Sha3,
}

/// A hash: the method and 128 lowercase hex ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hash {
    /// Which algorithm.
    pub method: HashMethod,
    /// The digest as lowercase hex text.
    pub value: Val,
}

/// Terminal output the user's side saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The bytes read from the PTY.
    pub seen_data: Val,
}

/// Keys a developer typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entered {
    /// The keys.
    pub entered_data: Val,
    /// Output the developer expects echoed but has not seen yet.
    pub echo_data: Val,
}

/// A signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// 64 bytes of Ed25519.
    Ed25519(Val),
    /// Any other kind (never produced, never verifies).
    Other(Val),
}

/// A raw 32-byte Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicKey(pub Val);

/// A session key, perhaps bound to a GnuPG identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PerhapsSigned {
    /// Signed with GnuPG: the key, the clearsigned statement, and the armoured key export.
    GpgSigned(PublicKey, Val, Val),
    /// Not signed (the user's key always is).
    UnSigned(PublicKey),
}

impl PerhapsSigned {
    /// The session key itself.
    pub fn key(&self) -> &PublicKey {
        match self {
            PerhapsSigned::GpgSigned(key, _, _) | PerhapsSigned::UnSigned(key) => key,
        }
    }
}

/// A control action: outside the hash chain, signed on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAction {
    /// The user refused an Entered.
    EnteredRejected {
        /// The refused Entered's hash.
        entered_rejected: Hash,
        /// The last Entered the user accepted, if any.
        entered_last_accepted: Option<Hash>,
    },
    /// A session key, with the protocol version.
    SessionKey(PerhapsSigned, Val),
    /// The user let this key type.
    SessionKeyAccepted(PublicKey),
    /// The user refused this key.
    SessionKeyRejected(PublicKey),
    /// A chat line: sender name and text.
    ChatMessage(Val, Val),
}

/// A signed control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// What it does.
    pub control: ControlAction,
    /// The signature over `T("Control", hash(action))`.
    pub signature: Signature,
}

/// A link of the hash chain: a Seen or an Entered with its pointers.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity<A> {
    /// The Seen or Entered.
    pub activity: A,
    /// The previous Seen or Entered (absent on the wire; recovered on receipt).
    pub prev_activity: Option<Hash>,
    /// The last accepted Entered (absent on the wire; recovered on receipt).
    pub prev_entered: Option<Hash>,
    /// Seconds since the previous activity, as the sender measured them.
    pub elapsed_time: f64,
    /// The signature over the chain hash without itself.
    pub signature: Signature,
}

/// A message of one side: an activity or a control.
#[derive(Debug, Clone, PartialEq)]
pub enum Message<A> {
    /// A link of the chain.
    Activity(Activity<A>),
    /// A control message.
    Control(Control),
}

/// A message from either side.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyMessage {
    /// From the user: Seen activities.
    User(Message<Seen>),
    /// From a developer: Entered activities.
    Developer(Message<Entered>),
}

/// One line of a session log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The message.
    pub message: AnyMessage,
    /// The activity's hash as the writer computed it (null for controls).
    pub hash: Option<Hash>,
    /// When it was logged, in POSIX seconds (not hashed).
    pub timestamp: f64,
}

/// A message a session role appends to its log, with the chain hash it computed (none for a
/// control); the writer adds the time.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// The message, with its pointers.
    pub message: AnyMessage,
    /// The activity's chain hash (`loggedHash`), none for a control.
    pub hash: Option<Hash>,
}

impl LogEntry {
    /// The log line, logged at `timestamp` (POSIX seconds).
    pub fn at(self, timestamp: f64) -> LogLine {
        LogLine {
            message: self.message,
            hash: self.hash,
            timestamp,
        }
    }
}
