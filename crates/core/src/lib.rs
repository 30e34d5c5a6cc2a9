//! kanava's pure core: the types every other crate shares and the rules that need no I/O.
//!
//! Nothing here touches the network, the disk or a clock; callers pass times in. That keeps the
//! rules (what a valid name is, which history entries a channel keeps) testable on their own and
//! identical in the store, the hub and every transport.

mod account;
mod caps;
mod disk;
mod duration;
mod entry;
mod history;
mod identity;
mod lookalike;
mod memory;
mod name;
mod sanitize;
mod size;

pub use account::{Ban, PrivateMessage, Topic};
pub use caps::{Budgets, ConnectionBudget, Full, Slot, Sources, source_of};
pub use disk::{DiskBudget, DiskRefusal};
pub use duration::{DurationError, parse_duration};
pub use entry::{Entry, FrameKind, NewEntry};
pub use history::{HistoryLimits, HistoryWindow};
pub use identity::{
    Claim, Identity, IdentityKey, KeyAdded, KeySharing, MAX_KEYS_PER_NAME, MAX_NICK_LEN, Nick,
    NickError, PENDING_KEY_TTL_MS, Rename,
};
pub use lookalike::passes_for;
pub use memory::{MemoryBudget, OverBudget, Reservation};
pub use name::{ChannelName, NameError, Uid};
pub use sanitize::sanitize;
pub use size::{SizeError, parse_size};
