//! The message rate limit: a token bucket per user, shared by all their connections and
//! sessions, whose burst lets a pasted block through.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use kanava_core::Nick;

/// Messages a user may send at once: a pasted block of this many lines goes through.
const BURST: f64 = 20.0;

/// Messages per second a user may keep sending after the burst.
const RATE: f64 = 2.0;

/// The message rate limit of every user, shared by all their connections and sessions.
#[derive(Default)]
pub(crate) struct RateLimits(Mutex<HashMap<String, RateLimit>>);

/// Users tracked before buckets that are full again are forgotten.
const TRACKED_USERS: usize = 10_000;

impl RateLimits {
    /// Whether `nick` may send a message now (taking a token if so).
    pub(crate) fn allow(&self, nick: &Nick) -> bool {
        let mut buckets = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= TRACKED_USERS {
            buckets.retain(|_, bucket| !bucket.is_full());
        }
        buckets
            .entry(nick.key())
            .or_insert_with(RateLimit::new)
            .allow()
    }
}

/// A token bucket: `BURST` messages at once, then `RATE` per second.
pub(crate) struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub(crate) fn new() -> Self {
        Self {
            tokens: BURST,
            last: Instant::now(),
        }
    }

    fn is_full(&self) -> bool {
        self.tokens + self.last.elapsed().as_secs_f64() * RATE >= BURST
    }

    pub(crate) fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * RATE;
        self.tokens = (self.tokens + refill).min(BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_paste_through_then_limits() {
        use std::time::Duration;
        let mut limit = RateLimit::new();
        assert!((0..20).all(|_| limit.allow()), "a 20-line paste");
        assert!(!limit.allow());
        limit.last -= Duration::from_secs(1);
        assert!(limit.allow() && limit.allow());
        assert!(!limit.allow());
    }
}
