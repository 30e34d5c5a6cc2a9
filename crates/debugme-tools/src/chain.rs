//! The hash chain of a log, for drawing it: each activity's pointers and chain hash.
//!
//! Server logs carry no pointers (the wire drops them), so they are recovered from the
//! signatures, as the verifier does ([`Recovery`], within the same bounds, so that drawing
//! any log takes time proportional to its length). This is not verification: an activity
//! no pair explains keeps the pointers written in the file and is marked unverified, and keys
//! are taken from anywhere in the log.

use kanava_debugme::hash::ActivityKind;
use kanava_debugme::model::{Activity, AnyMessage, ControlAction, Hash, Message, PublicKey};
use kanava_debugme::recover::{MAX_CHECKS_PER_LINE, Pointers, Recovery, Side, Signable};

use crate::log::Line;

/// An activity's place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The previous activity it names.
    pub prev_activity: Option<Hash>,
    /// The last accepted Entered it names.
    pub prev_entered: Option<Hash>,
    /// Its chain hash, with those pointers.
    pub hash: Hash,
    /// Whether a session key of the log signed it with those pointers.
    pub verified: bool,
}

/// The chain links of a log's lines: `Some` for each activity, `None` for each control.
pub fn links(lines: &[Line]) -> Vec<Option<Link>> {
    let keys: Vec<PublicKey> = lines
        .iter()
        .filter_map(|line| match &line.line.message {
            AnyMessage::User(Message::Control(c)) | AnyMessage::Developer(Message::Control(c)) => {
                match &c.control {
                    ControlAction::SessionKey(key, _) => Some(key.key().clone()),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    // A line never checks more keys than its budget allows.
    let keys: Vec<&PublicKey> = keys.iter().take(MAX_CHECKS_PER_LINE as usize).collect();
    let mut recovery = Recovery::default();
    lines
        .iter()
        .map(|line| {
            recovery.budget.start_line();
            match &line.line.message {
                AnyMessage::User(Message::Activity(a)) => {
                    Some(link(&mut recovery, &keys, Side::User, a))
                }
                AnyMessage::Developer(Message::Activity(a)) => {
                    Some(link(&mut recovery, &keys, Side::Developer, a))
                }
                _ => None,
            }
        })
        .collect()
}

fn link<A: ActivityKind>(
    recovery: &mut Recovery,
    keys: &[&PublicKey],
    side: Side,
    activity: &Activity<A>,
) -> Link {
    let signable = Signable::new(activity);
    let written: Pointers = (
        activity.prev_activity.clone(),
        activity.prev_entered.clone(),
    );
    let mut tried = Vec::new();
    let mut found = None;
    let any_written = written.0.is_some() || written.1.is_some();
    if any_written && recovery.is_earlier(&written.0) && recovery.is_earlier(&written.1) {
        if let Some(Some(_)) = signable.signer(&written, keys, &mut recovery.budget) {
            found = Some(written.clone());
        }
        tried.push(written.clone());
    }
    let found = found.or_else(|| {
        recovery
            .find(&signable, side, keys, &tried)
            .ok()
            .map(|recovered| recovered.pointers)
    });
    let verified = found.is_some();
    let pointers = found.unwrap_or(written);
    let hash = signable.chain_hash(&pointers);
    recovery.push(side, pointers.clone(), hash.clone());
    Link {
        prev_activity: pointers.0,
        prev_entered: pointers.1,
        hash,
        verified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::parse;
    use crate::testlog;

    #[test]
    fn the_server_flavour_recovers_the_users_pointers() {
        let user = links(&parse(testlog::session(true).as_bytes()).unwrap());
        let server = links(&parse(testlog::session(false).as_bytes()).unwrap());
        assert_eq!(user, server);
        assert_eq!(user.iter().flatten().count(), 9);
        assert!(user.iter().flatten().all(|l| l.verified));
        // Line 14 follows line 10 (the rejected line 11 is not its predecessor).
        let (l10, l14) = (user[9].as_ref().unwrap(), user[13].as_ref().unwrap());
        assert_eq!(l14.prev_activity.as_ref(), Some(&l10.hash));
        assert_eq!(
            l14.prev_entered.as_ref(),
            Some(&user[5].as_ref().unwrap().hash)
        );
    }

    #[test]
    fn the_recovered_hashes_are_the_logged_ones() {
        let real = include_str!("../../debugme/testdata/appendix-a.log");
        let lines = parse(real.as_bytes()).unwrap();
        let links = links(&lines);
        for (line, link) in lines.iter().zip(&links) {
            if let Some(link) = link {
                assert!(link.verified);
                assert_eq!(Some(&link.hash), line.line.hash.as_ref());
            }
        }
    }

    #[test]
    fn without_keys_the_written_pointers_are_kept_unverified() {
        let real = include_str!("../../debugme/testdata/developer-entered.log");
        let lines = parse(real.as_bytes()).unwrap();
        let link = links(&lines)[0].clone().unwrap();
        assert!(!link.verified);
        assert_eq!(Some(&link.hash), lines[0].line.hash.as_ref());
        assert!(link.prev_activity.is_some());
    }
}
