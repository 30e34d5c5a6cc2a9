//! Tools over debug-me session logs that need the outside world: GnuPG through the system's
//! `gpg` (always in a throwaway keyring), the verification report `kanava verify` prints, and
//! `kanava replay`, `kanava graphviz` and `kanava export --asciicast`, which show a log to
//! people (a terminal, Graphviz, asciinema).

#![warn(missing_docs)]

pub mod asciicast;
pub mod chain;
pub mod gpg;
pub mod graphviz;
pub mod log;
pub mod replay;
pub mod report;
pub mod terminal;

#[cfg(test)]
mod testlog;
