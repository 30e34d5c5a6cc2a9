//! Recovering the pointers the wire drops (`prevActivity`, `prevEntered`) from the signatures:
//! the pair of earlier activities, or none, under which a session key signed an activity.
//! The verifier and the chain drawing both walk a log this way.
//!
//! Likely pairs come first (the pointers written in the file when they name earlier
//! activities, the newest activity with the previous line's `prevEntered`), so an honest log
//! costs about one signature check per line; only an activity none of them explains gets the
//! search over every pair.
//!
//! The session roles (user, developer) search their own candidates instead of a whole log,
//! with [`pairs`] and [`first_signed`].

use std::collections::HashSet;

use crate::hash::{self, ActivityKind};
use crate::model::{Activity, Hash, PublicKey};
use crate::sign;

/// An activity's `(prevActivity, prevEntered)`.
pub type Pointers = (Option<Hash>, Option<Hash>);

/// `activity` with these pointers instead of its own.
pub fn with_pointers<A: Clone>(activity: &Activity<A>, pointers: &Pointers) -> Activity<A> {
    Activity {
        prev_activity: pointers.0.clone(),
        prev_entered: pointers.1.clone(),
        ..activity.clone()
    }
}

/// Every pair `(pa, pe)` with `pa` from `activities` and `pe` from `entered`, in that order
/// (`pa` varies slowest).
pub fn pairs<'a>(
    activities: &'a [Option<Hash>],
    entered: &'a [Option<Hash>],
) -> impl Iterator<Item = Pointers> + 'a {
    activities
        .iter()
        .flat_map(move |pa| entered.iter().map(move |pe| (pa.clone(), pe.clone())))
}

/// Most signature checks a session role spends on one message from the network (about 50 ms):
/// a message nobody it knows signed would otherwise cost every pair of pointers it could have,
/// seconds of CPU per forged message.
pub const MAX_CHECKS: usize = 1024;

/// The first of `pairs` under which one of `keys` signed `activity`, trying at most
/// [`MAX_CHECKS`] signature checks, so `pairs` should come likely first; a pair repeated in
/// `pairs` is checked once.
pub fn first_signed<A: ActivityKind + Clone>(
    activity: &Activity<A>,
    pairs: impl IntoIterator<Item = Pointers>,
    keys: &[PublicKey],
) -> Option<Pointers> {
    if keys.is_empty() {
        return None;
    }
    let mut tried = HashSet::new();
    let budget = (MAX_CHECKS / keys.len()).max(1);
    for pointers in pairs {
        if tried.len() >= budget {
            return None;
        }
        if !tried.insert(pointers.clone()) {
            continue;
        }
        let candidate = with_pointers(activity, &pointers);
        let signed = hash::activity_signed(&candidate);
        if keys
            .iter()
            .any(|key| sign::verifies(key, &signed, &candidate.signature))
        {
            return Some(pointers);
        }
    }
    None
}

/// The chain so far, oldest first, and the search for the next activity's pointers.
#[derive(Debug, Default)]
pub struct Recovery {
    chain: Vec<Hash>,
    known: HashSet<Hash>,
    last: Pointers,
    checks: u64,
}

impl Recovery {
    /// Signature checks made so far (one per key tried), a measure of the work.
    pub fn checks(&self) -> u64 {
        self.checks
    }

    /// Whether one of `keys` signed `activity` with `pointers`.
    pub fn signed_with<A: ActivityKind + Clone>(
        &mut self,
        activity: &Activity<A>,
        pointers: &Pointers,
        keys: &[PublicKey],
    ) -> bool {
        let candidate = with_pointers(activity, pointers);
        let signed = hash::activity_signed(&candidate);
        self.checks += keys.len() as u64;
        keys.iter()
            .any(|key| sign::verifies(key, &signed, &candidate.signature))
    }

    /// Absent, then every activity so far, newest first: what a pointer may name.
    pub fn candidates(&self) -> Vec<Option<Hash>> {
        std::iter::once(None)
            .chain(self.chain.iter().rev().cloned().map(Some))
            .collect()
    }

    fn is_earlier(&self, pointer: &Option<Hash>) -> bool {
        pointer.as_ref().is_none_or(|h| self.known.contains(h))
    }

    /// Pointers naming earlier activities (or none) under which one of `keys` signed
    /// `activity`. The full search looks for `prevActivity` among the `window` newest
    /// activities only (`usize::MAX` for all), and for `prevEntered` among all.
    pub fn find<A: ActivityKind + Clone>(
        &mut self,
        activity: &Activity<A>,
        keys: &[PublicKey],
        window: usize,
    ) -> Option<Pointers> {
        if keys.is_empty() {
            return None;
        }
        let newest = self.chain.last().cloned();
        let written = (
            activity.prev_activity.clone(),
            activity.prev_entered.clone(),
        );
        let mut likely = Vec::with_capacity(6);
        // Pointers written in the line come first, when there are any: a server's log and the
        // wire have none, and (None, None) is tried last below.
        let any_written = written.0.is_some() || written.1.is_some();
        if any_written && self.is_earlier(&written.0) && self.is_earlier(&written.1) {
            likely.push(written);
        }
        likely.extend([
            (newest.clone(), self.last.1.clone()),
            (newest.clone(), newest.clone()),
            (newest, None),
            self.last.clone(),
            (None, None),
        ]);
        if let Some(found) = likely
            .into_iter()
            .find(|pointers| self.signed_with(activity, pointers, keys))
        {
            return Some(found);
        }
        let all = self.candidates();
        let recent = &all[..all.len().min(window.saturating_add(1))];
        for pa in recent {
            for pe in &all {
                let pointers = (pa.clone(), pe.clone());
                if self.signed_with(activity, &pointers, keys) {
                    return Some(pointers);
                }
            }
        }
        None
    }

    /// Adds `activity`, with `pointers`, to the chain; returns its chain hash.
    pub fn push<A: ActivityKind + Clone>(
        &mut self,
        activity: &Activity<A>,
        pointers: Pointers,
    ) -> Hash {
        let chain_hash = hash::activity(&with_pointers(activity, &pointers));
        self.chain.push(chain_hash.clone());
        self.known.insert(chain_hash.clone());
        self.last = pointers;
        chain_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Seen, Signature};
    use crate::sign::SessionKey;
    use std::cell::Cell;

    #[test]
    fn a_message_nobody_signed_costs_at_most_the_budget() {
        let signer = SessionKey::from_secret([1; 32]);
        let other = SessionKey::from_secret([2; 32]);
        let mut forged = Activity {
            activity: Seen {
                seen_data: b"x".to_vec(),
            },
            prev_activity: None,
            prev_entered: None,
            elapsed_time: 0.0,
            signature: Signature::Ed25519(Vec::new()),
        };
        other.sign_activity(&mut forged);
        let hashes: Vec<Option<Hash>> = (0..100u8)
            .map(|i| {
                Some(Hash {
                    method: crate::model::HashMethod::Sha512,
                    value: format!("{i:0128x}").into_bytes(),
                })
            })
            .collect();
        let pulled = Cell::new(0);
        let candidates = pairs(&hashes, &hashes).inspect(|_| pulled.set(pulled.get() + 1));
        let keys = [signer.public(), signer.public()];
        assert_eq!(first_signed(&forged, candidates, &keys), None);
        assert!(
            pulled.get() <= MAX_CHECKS / keys.len() + 1,
            "{}",
            pulled.get()
        );
        // Under the key that signed it, it is found.
        assert_eq!(
            first_signed(&forged, [(None, None)], &[other.public()]),
            Some((None, None))
        );
    }
}
