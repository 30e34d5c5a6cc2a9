//! Connection caps shared by every listener: one budget of open connections for the whole
//! process (it is what the open-file limit allows), a cap per listener, and a cap per source (an
//! IPv4 address or an IPv6 /64), so that one host cannot take every slot. Listeners take a slot
//! at accept time, before any handshake.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The key a connection is counted under: an IPv4 address (IPv4-mapped IPv6 included) or an
/// IPv6 /64.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// The process-wide budget of open connections, shared by every listener, so that together
/// they never take the file descriptors the store and the logs need.
#[derive(Debug)]
pub struct ConnectionBudget {
    max: usize,
    open: AtomicUsize,
}

impl ConnectionBudget {
    /// A budget of `max` connections open at once, over all listeners.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: AtomicUsize::new(0),
        })
    }

    /// The most connections open at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open now, over all listeners.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn take(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The process-wide budgets every listener draws from: open connections, buffered payload and
/// disk.
#[derive(Debug, Clone)]
pub struct Budgets {
    /// Open connections over all listeners.
    pub connections: Arc<ConnectionBudget>,
    /// Buffered payload over all connections.
    pub memory: Arc<crate::MemoryBudget>,
    /// The data directory's disk, shared by history and debug-me logs.
    pub disk: Arc<crate::DiskBudget>,
}

/// Counts one listener's open connections against its caps and the shared budget.
#[derive(Debug)]
pub struct Sources {
    budget: Arc<ConnectionBudget>,
    max_total: usize,
    max_per_source: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Holds one connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    sources: Arc<Sources>,
    source: IpAddr,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The process-wide budget, shared by every listener.
    Budget,
    /// The listener's own cap.
    Total,
    /// The per-source cap.
    Source,
}

impl Full {
    /// A label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Full::Budget => "budget",
            Full::Total => "total",
            Full::Source => "source",
        }
    }

    /// What the refused client is told.
    pub fn reason(self) -> &'static str {
        match self {
            Full::Budget | Full::Total => "server busy: too many connections",
            Full::Source => "too many connections from your address",
        }
    }
}

impl Sources {
    /// Caps of `max_total` connections on this listener, `max_per_source` from one source, all
    /// within `budget`.
    pub fn new(
        budget: Arc<ConnectionBudget>,
        max_total: usize,
        max_per_source: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            budget,
            max_total,
            max_per_source,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// Takes a slot for a connection from `ip`, or says which cap is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Full> {
        let source = source_of(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.0 >= self.max_total {
            return Err(Full::Total);
        }
        if open.1.get(&source).copied().unwrap_or(0) >= self.max_per_source {
            return Err(Full::Source);
        }
        if !self.budget.take() {
            return Err(Full::Budget);
        }
        *open.1.entry(source).or_insert(0) += 1;
        open.0 += 1;
        Ok(Slot {
            sources: Arc::clone(self),
            source,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.sources.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 -= 1;
        if let Some(count) = open.1.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                open.1.remove(&self.source);
            }
        }
        self.sources.budget.give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_source_and_in_total_and_slots_free_on_drop() {
        let sources = Sources::new(ConnectionBudget::new(100), 3, 2);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let a_same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let b: IpAddr = "192.0.2.1".parse().unwrap();
        let s1 = sources.admit(a).unwrap();
        let _s2 = sources.admit(a_same_64).unwrap();
        assert_eq!(sources.admit(a).unwrap_err(), Full::Source);
        let _s3 = sources.admit(b).unwrap();
        assert_eq!(
            sources.admit("192.0.2.9".parse().unwrap()).unwrap_err(),
            Full::Total
        );
        drop(s1);
        let _s4 = sources.admit(a).unwrap();
    }

    #[test]
    fn listeners_share_one_budget() {
        let budget = ConnectionBudget::new(3);
        let mles = Sources::new(Arc::clone(&budget), 10, 10);
        let ssh = Sources::new(Arc::clone(&budget), 10, 10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = mles.admit(ip).unwrap();
        let _second = mles.admit(ip).unwrap();
        let _third = ssh.admit(ip).unwrap();
        assert_eq!(ssh.admit(ip).unwrap_err(), Full::Budget);
        assert_eq!(mles.admit(ip).unwrap_err(), Full::Budget);
        assert_eq!(budget.open(), 3);
        drop(first);
        assert_eq!(budget.open(), 2);
        let _fourth = ssh.admit(ip).unwrap();
    }
}
