//! Connection caps shared by every listener: in total, and per source (an IPv4 address or an
//! IPv6 /64), so that one host cannot take every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The key a connection is counted under.
fn source_of(ip: IpAddr) -> IpAddr {
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

/// Counts open connections against the caps.
#[derive(Debug)]
pub struct Sources {
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
    /// The total cap.
    Total,
    /// The per-source cap.
    Source,
}

impl Full {
    /// A label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Full::Total => "total",
            Full::Source => "source",
        }
    }
}

impl Sources {
    /// Caps of `max_total` connections, `max_per_source` from one source.
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<Self> {
        Arc::new(Self {
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
        let count = open.1.entry(source).or_insert(0);
        if *count >= self.max_per_source {
            return Err(Full::Source);
        }
        *count += 1;
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_source_and_in_total_and_slots_free_on_drop() {
        let sources = Sources::new(3, 2);
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
}
