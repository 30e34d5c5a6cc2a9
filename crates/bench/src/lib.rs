//! Load generators for the protocols kanava serves, so that a deployment can be measured from
//! the outside with the same binary that runs it.

#![warn(missing_docs)]

pub mod attack;
pub mod debugme;
pub mod fairness;
pub mod mles;
mod process;
mod progress;
mod schedule;
pub mod ssh;
