//! Recovering the pointers the wire drops (`prevActivity`, `prevEntered`) from the signatures:
//! the pair of earlier activities, or none, under which a session key signed an activity.
//! The verifier and the chain drawing walk a whole log this way with [`Recovery`]; the session
//! roles (user, developer) search their own candidates instead, with [`pairs`] and
//! [`first_signed`].
//!
//! The reference verifier tries every pair of earlier activities for every line, a cost that
//! grows with the square of the log (and hours for a log crafted to need it). [`Recovery`]
//! tries the likely pairs first (an honest log costs about one signature check per line),
//! then pairs of the [`WINDOW`] latest activities of each side, most likely first, and spends
//! at most [`MAX_CHECKS_PER_LINE`] signature checks on a line and [`CHECKS_PER_LINE`] a line
//! on average over the log ([`CheckBudget`]): verification costs time proportional to the
//! log's length, whatever the log.

use std::collections::{HashSet, VecDeque};

use crate::hash::{self, ActivityKind};
use crate::model::{Activity, Hash, PublicKey, Signature};
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

/// How many of the latest activities of each side (the user's Seen, the developers' Entered)
/// a recovered `prevActivity` may name, and how many of the latest Entered a `prevEntered`
/// may name beyond those the recent activities named. An honest peer names the newest
/// activity it has seen; 64 leaves room for a developer typing through a burst of output.
pub const WINDOW: usize = 64;

/// Most signature checks (one pair of pointers under one key) one line of a log may cost.
pub const MAX_CHECKS_PER_LINE: u64 = 256;

/// Signature checks each line adds to the log's allowance: the average cost of a line, when
/// lines that need a search follow lines that did not. Over a log of `n` lines verification
/// makes at most `MAX_CHECKS_PER_LINE + CHECKS_PER_LINE × n` checks.
pub const CHECKS_PER_LINE: u64 = 4;

/// How many distinct `prevEntered` of the latest activities are kept as candidates: the last
/// accepted Entered may be far back, but the activities after it keep naming it.
const RECENT_ENTERED_POINTERS: usize = 8;

/// The signature checks a log may still spend: each line earns [`CHECKS_PER_LINE`], a line
/// may spend at most [`MAX_CHECKS_PER_LINE`] of what is left, and the log starts with one
/// line's maximum (so that a short log is searched exhaustively, as the reference does).
#[derive(Debug)]
pub struct CheckBudget {
    spent: u64,
    available: u64,
    line_limit: u64,
    line_spent: u64,
}

impl Default for CheckBudget {
    fn default() -> Self {
        Self {
            spent: 0,
            available: MAX_CHECKS_PER_LINE,
            line_limit: 0,
            line_spent: 0,
        }
    }
}

impl CheckBudget {
    /// Starts a line: earns its share and sets what it may spend.
    pub fn start_line(&mut self) {
        self.available += CHECKS_PER_LINE;
        self.line_limit = self.available.min(MAX_CHECKS_PER_LINE);
        self.line_spent = 0;
    }

    /// Checks the current line may still make.
    pub fn line_left(&self) -> u64 {
        self.line_limit - self.line_spent
    }

    /// Checks the current line made.
    pub fn line_spent(&self) -> u64 {
        self.line_spent
    }

    /// Checks made in all.
    pub fn spent(&self) -> u64 {
        self.spent
    }

    /// Whether `signature` is `key`'s over `bytes`, or `None` when the line has no check left.
    pub fn verify(&mut self, key: &PublicKey, bytes: &[u8], signature: &Signature) -> Option<bool> {
        if self.line_spent >= self.line_limit {
            return None;
        }
        self.line_spent += 1;
        self.spent += 1;
        self.available -= 1;
        Some(sign::verifies(key, bytes, signature))
    }
}

/// Which side of a session an activity or a key is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The user: Seen activities, the user's session key and decisions.
    User,
    /// A developer: Entered activities, developers' session keys.
    Developer,
}

impl Side {
    /// 0 for the user, 1 for a developer: the side's place in per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::User => 0,
            Side::Developer => 1,
        }
    }
}

/// An activity's hashes that do not depend on its pointers, computed once per line however
/// many pairs are tried.
pub struct Signable<'a> {
    activity: Vec<u8>,
    elapsed: Vec<u8>,
    signature: &'a Signature,
}

impl<'a> Signable<'a> {
    /// The parts of `activity`.
    pub fn new<A: ActivityKind>(activity: &'a Activity<A>) -> Self {
        Self {
            activity: activity.activity.hash(),
            elapsed: hash::elapsed_time(activity.elapsed_time),
            signature: &activity.signature,
        }
    }

    /// What the signature covers with `pointers`.
    fn signed(&self, pointers: &Pointers) -> Vec<u8> {
        hash::t(
            "Activity",
            &hash::l(&[
                &self.activity,
                &hash::u(pointers.0.as_ref()),
                &hash::u(pointers.1.as_ref()),
                &self.elapsed,
            ]),
        )
    }

    /// The chain hash with `pointers`.
    pub fn chain_hash(&self, pointers: &Pointers) -> Hash {
        hash::sha512(hash::t(
            "Activity",
            &hash::l(&[
                &self.activity,
                &hash::u(pointers.0.as_ref()),
                &hash::u(pointers.1.as_ref()),
                &self.elapsed,
                &hash::signature(self.signature),
            ]),
        ))
    }

    /// The first of `keys` that signed it with `pointers`: `Some(None)` when none did, `None`
    /// when the budget ran out before every key was tried.
    pub fn signer(
        &self,
        pointers: &Pointers,
        keys: &[&PublicKey],
        budget: &mut CheckBudget,
    ) -> Option<Option<usize>> {
        let signed = self.signed(pointers);
        for (index, key) in keys.iter().enumerate() {
            if budget.verify(key, &signed, self.signature)? {
                return Some(Some(index));
            }
        }
        Some(None)
    }
}

/// Pointers found for an activity, and which of the keys signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The pointers.
    pub pointers: Pointers,
    /// The index of the signer in the keys given.
    pub key: usize,
}

/// No pair tried explains an activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unrecovered {
    /// Whether every pair of earlier activities (and none) was tried under every key given,
    /// so that no pointers at all can explain the signature, as the reference would find.
    pub every_pair: bool,
}

/// The chain so far and the search for the next activity's pointers.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Every chain hash so far.
    known: HashSet<Hash>,
    /// The [`WINDOW`] latest activities of each side with their places, oldest first.
    recent: [VecDeque<(usize, Hash)>; 2],
    /// Activities of each side so far.
    count: [usize; 2],
    /// The newest activity, its side and its pointers.
    newest: Option<(Side, Hash, Pointers)>,
    /// The newest activity of each side and its pointers.
    newest_of: [Option<(Hash, Pointers)>; 2],
    /// Distinct `prevEntered` of the latest activities, newest first.
    recent_entered_pointers: VecDeque<Option<Hash>>,
    /// The log's signature checks.
    pub budget: CheckBudget,
}

impl Recovery {
    /// Whether `pointer` is absent or names an activity already in the chain.
    pub fn is_earlier(&self, pointer: &Option<Hash>) -> bool {
        pointer.as_ref().is_none_or(|h| self.known.contains(h))
    }

    /// The likely pairs for an activity of `side`, most likely first.
    fn likely(&self, side: Side) -> Vec<Pointers> {
        let mut likely = Vec::with_capacity(6);
        if let Some((newest_side, newest, last)) = &self.newest {
            let newest = Some(newest.clone());
            // After an accepted Entered the user's next Seen names it twice; after a Seen
            // everyone keeps the last accepted Entered.
            if *newest_side == Side::Developer {
                likely.push((newest.clone(), newest.clone()));
                likely.push((newest.clone(), last.1.clone()));
            } else {
                likely.push((newest.clone(), last.1.clone()));
                likely.push((newest.clone(), newest.clone()));
            }
            likely.push((newest, None));
            likely.push(last.clone());
        }
        // In wire order, a side's message may follow the other side's newer ones it had not
        // seen yet: it names its own side's newest activity.
        if let Some((own, pointers)) = &self.newest_of[side.index()] {
            likely.push((Some(own.clone()), pointers.1.clone()));
        }
        likely.push((None, None));
        likely
    }

    /// Candidates for `prevActivity` beyond the likely pairs: the window of each side, newest
    /// first, then none.
    fn activity_candidates(&self) -> Vec<Option<Hash>> {
        let [user, developer] = &self.recent;
        let mut merged: Vec<&(usize, Hash)> = user.iter().chain(developer).collect();
        merged.sort_unstable_by_key(|(place, _)| std::cmp::Reverse(*place));
        merged
            .into_iter()
            .map(|(_, h)| Some(h.clone()))
            .chain(std::iter::once(None))
            .collect()
    }

    /// Candidates for `prevEntered`: what the latest activities named, the window of Entered,
    /// none, then the window of Seen (a pointer may name any activity).
    fn entered_candidates(&self) -> Vec<Option<Hash>> {
        let mut seen = HashSet::new();
        let [user, developer] = &self.recent;
        self.recent_entered_pointers
            .iter()
            .cloned()
            .chain(developer.iter().rev().map(|(_, h)| Some(h.clone())))
            .chain(std::iter::once(None))
            .chain(user.iter().rev().map(|(_, h)| Some(h.clone())))
            .filter(|candidate| seen.insert(candidate.clone()))
            .collect()
    }

    /// Pointers naming earlier activities (or none) under which one of `keys` signed the
    /// activity: the likely pairs first, then pairs from the window by increasing distance
    /// from the most likely, until the line's budget runs out. Pairs in `tried` are skipped.
    pub fn find(
        &mut self,
        activity: &Signable<'_>,
        side: Side,
        keys: &[&PublicKey],
        tried: &[Pointers],
    ) -> Result<Recovered, Unrecovered> {
        if keys.is_empty() {
            // Nobody can have signed it (and no pair would spend a check, so none is tried).
            return Err(Unrecovered { every_pair: true });
        }
        let mut tried: HashSet<Pointers> = tried.iter().cloned().collect();
        let likely = self.likely(side);
        let activities = self.activity_candidates();
        let entered = self.entered_candidates();
        let window = (0..activities.len() + entered.len() - 1)
            .flat_map(|distance| {
                let first = distance.saturating_sub(entered.len() - 1);
                (first..=distance.min(activities.len() - 1)).map(move |a| (a, distance - a))
            })
            .map(|(a, e)| (activities[a].clone(), entered[e].clone()));
        for pointers in likely.into_iter().chain(window) {
            if !tried.insert(pointers.clone()) {
                continue;
            }
            match activity.signer(&pointers, keys, &mut self.budget) {
                Some(Some(key)) => return Ok(Recovered { pointers, key }),
                Some(None) => {}
                None => return Err(Unrecovered { every_pair: false }),
            }
        }
        Err(Unrecovered {
            every_pair: self.count.iter().all(|n| *n <= WINDOW),
        })
    }

    /// Adds an activity of `side` with `pointers` and chain hash `chain_hash` to the chain.
    pub fn push(&mut self, side: Side, pointers: Pointers, chain_hash: Hash) {
        let place = self.count.iter().sum();
        self.known.insert(chain_hash.clone());
        let recent = &mut self.recent[side.index()];
        recent.push_back((place, chain_hash.clone()));
        if recent.len() > WINDOW {
            recent.pop_front();
        }
        self.count[side.index()] += 1;
        if let Some(at) = self
            .recent_entered_pointers
            .iter()
            .position(|p| *p == pointers.1)
        {
            self.recent_entered_pointers.remove(at);
        }
        self.recent_entered_pointers.push_front(pointers.1.clone());
        self.recent_entered_pointers
            .truncate(RECENT_ENTERED_POINTERS);
        self.newest_of[side.index()] = Some((chain_hash.clone(), pointers.clone()));
        self.newest = Some((side, chain_hash, pointers));
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
