//! Tools over debug-me session logs that need the outside world: GnuPG through the system's
//! `gpg` (always in a throwaway keyring), and the verification report `kanava verify` prints.

#![warn(missing_docs)]

pub mod gpg;
pub mod report;
