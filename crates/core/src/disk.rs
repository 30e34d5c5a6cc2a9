//! The data directory's disk budget, shared by channel history and debug-me logs: a total
//! (`--max-disk`) and a share per source (an IPv4 address or IPv6 /64), so that one address
//! cannot fill the disk for everyone. Writers charge what they are about to write and release
//! what they delete; a charge that does not fit is refused before anything is written.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::source_of;

/// Which part of the budget refused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DiskRefusal {
    /// The data directory's total is used up.
    #[error("the server's disk budget is used up")]
    Total,
    /// The writer's source has used its share.
    #[error("your address has used its share of the server's disk")]
    Source,
}

/// Bytes on disk, in total and per source.
#[derive(Debug)]
pub struct DiskBudget {
    max: u64,
    share: u64,
    used: Mutex<(u64, HashMap<IpAddr, u64>)>,
}

impl DiskBudget {
    /// A budget of `max` bytes in all, at most `share` from one source, with `already` bytes
    /// in use (what the data directory held at start-up, counted under no source).
    pub fn new(max: u64, share: u64, already: u64) -> Self {
        Self {
            max,
            share,
            used: Mutex::new((already, HashMap::new())),
        }
    }

    /// The total.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The most one source may hold.
    pub fn share(&self) -> u64 {
        self.share
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Charges `bytes` written for `source` (or for no source: the server's own records), or
    /// refuses them.
    pub fn charge(&self, source: Option<IpAddr>, bytes: u64) -> Result<(), DiskRefusal> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.0.saturating_add(bytes) > self.max {
            return Err(DiskRefusal::Total);
        }
        if let Some(source) = source.map(source_of) {
            let held = used.1.entry(source).or_insert(0);
            if held.saturating_add(bytes) > self.share {
                return Err(DiskRefusal::Source);
            }
            *held += bytes;
        }
        used.0 += bytes;
        Ok(())
    }

    /// Counts `bytes` already in use (under no source) as held by `source`: at start-up, what
    /// the store kept from each address, so that its share is not forgotten by a restart.
    pub fn attribute(&self, source: IpAddr, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used.1.entry(source_of(source)).or_insert(0) += bytes;
    }

    /// Gives back `bytes` deleted that were charged to `source`.
    pub fn release(&self, source: Option<IpAddr>, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.0 = used.0.saturating_sub(bytes);
        if let Some(source) = source.map(source_of)
            && let Some(held) = used.1.get_mut(&source)
        {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                used.1.remove(&source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_and_per_source_shares() {
        let budget = DiskBudget::new(100, 40, 10);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        budget.charge(Some(a), 40).unwrap();
        assert_eq!(budget.charge(Some(a), 1), Err(DiskRefusal::Source));
        budget.charge(Some(b), 40).unwrap();
        assert_eq!(budget.charge(None, 11), Err(DiskRefusal::Total));
        budget.release(Some(a), 30);
        budget.charge(Some(a), 30).unwrap();
        assert_eq!(budget.used(), 90);
    }

    #[test]
    fn what_a_source_held_before_a_restart_counts_against_its_share() {
        let budget = DiskBudget::new(100, 40, 50);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        budget.attribute(a, 35);
        assert_eq!(budget.used(), 50, "already counted in the total");
        assert_eq!(budget.charge(Some(a), 6), Err(DiskRefusal::Source));
        budget.charge(Some(a), 5).unwrap();
        budget.release(Some(a), 40);
        budget.charge(Some(a), 40).unwrap();
    }
}
