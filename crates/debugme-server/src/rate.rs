//! Rate limits kept per source (an IPv4 address or IPv6 /64): a token bucket each, so that one
//! address cannot open sessions (and log files) as fast as it can connect.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kanava_core::source_of;

/// Sources tracked before full buckets are forgotten (a full bucket is the same as none).
const TRACKED: usize = 4096;

/// A token bucket per source: `per_minute` tokens a minute, at most `burst` saved up.
#[derive(Debug)]
pub struct PerSourceRate {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl PerSourceRate {
    /// A limit of `per_minute` a minute with bursts of `burst` (each at least 1).
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `ip` at `now`, or says how long until one is there.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= TRACKED {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second < burst
            });
        }
        let (tokens, at) = buckets.entry(source_of(ip)).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_second)
            .min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_source() {
        let rate = PerSourceRate::new(10, 5);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..5 {
            rate.take(a, start).unwrap();
        }
        let wait = rate.take(a, start).unwrap_err();
        assert!((5.9..=6.1).contains(&wait.as_secs_f64()), "{wait:?}");
        rate.take(b, start).unwrap();
        rate.take(a, start + Duration::from_secs(6)).unwrap();
        assert!(rate.take(a, start + Duration::from_secs(6)).is_err());
    }

    #[test]
    fn full_buckets_are_forgotten_when_many_sources_are_tracked() {
        let rate = PerSourceRate::new(60, 1);
        let start = Instant::now();
        for i in 0..TRACKED as u32 {
            rate.take(IpAddr::from(i.to_be_bytes()), start).unwrap();
        }
        let later = start + Duration::from_secs(2);
        rate.take("192.0.2.1".parse().unwrap(), later).unwrap();
        assert_eq!(rate.buckets.lock().unwrap().len(), 1);
    }
}
