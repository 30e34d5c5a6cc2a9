//! debug-me protocol 1, without I/O: the data model, the JSON log codec, the structural
//! hashing of the chain, and Ed25519 signing and verification of exactly the bytes the
//! protocol names. The server, the verifier and the client roles build on this.

#![warn(missing_docs)]

pub mod frame;
pub mod hash;
pub mod json;
pub mod model;
pub mod recover;
pub mod sign;
pub mod verify;
pub mod wire;

#[cfg(test)]
mod vectors;
