//! debug-me protocol 1, without I/O: the data model, the JSON log codec, the structural
//! hashing of the chain, and Ed25519 signing and verification of exactly the bytes the
//! protocol names; and the user's and the developer's sides of a session as state machines.
//! The server, the verifier and the client commands build on this.

#![warn(missing_docs)]

pub mod developer;
pub mod frame;
pub mod hash;
pub mod json;
pub mod model;
pub mod recover;
pub mod sign;
pub mod synthetic;
pub mod user;
pub mod verify;
pub mod wire;

#[cfg(test)]
mod vectors;
