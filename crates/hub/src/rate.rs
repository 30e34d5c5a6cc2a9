//! Token buckets and the chat's message-rate defaults, shared by every transport so that a
//! user meets the same limits over SSH and in the browser.

use std::time::Instant;

/// Messages a user may send at once: a pasted block of this many lines goes through.
pub const MESSAGE_BURST: f64 = 20.0;

/// Messages per second a user may keep sending after [`MESSAGE_BURST`].
pub const MESSAGE_RATE: f64 = 2.0;

/// Announcements (away, back, a topic) a user may make at once, at least.
pub const ANNOUNCEMENT_BURST: f64 = 3.0;

/// A token bucket: `burst` at once, then `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: f64, rate: f64) -> Self {
        Self {
            tokens: burst,
            burst,
            rate,
            last: Instant::now(),
        }
    }

    /// Whether `amount` tokens are there now, without taking them.
    pub fn has(&self, amount: f64) -> bool {
        let refill = self.last.elapsed().as_secs_f64() * self.rate;
        (self.tokens + refill).min(self.burst) >= amount
    }

    /// Puts back `amount` tokens taken for something that did not happen.
    pub fn give(&mut self, amount: f64) {
        self.tokens = (self.tokens + amount).min(self.burst);
    }

    /// Whether the bucket has refilled to its burst, so that forgetting it loses nothing.
    pub fn is_full(&self) -> bool {
        self.tokens + self.last.elapsed().as_secs_f64() * self.rate >= self.burst
    }

    /// Takes `amount` tokens if there are that many; says whether it did.
    pub fn take(&mut self, amount: f64) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= amount {
            self.tokens -= amount;
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
        let mut limit = TokenBucket::new(MESSAGE_BURST, MESSAGE_RATE);
        assert!((0..20).all(|_| limit.take(1.0)), "a 20-line paste");
        assert!(!limit.take(1.0));
        limit.last -= Duration::from_secs(1);
        assert!(limit.take(1.0) && limit.take(1.0));
        assert!(!limit.take(1.0));
        limit.give(1.0);
        assert!(limit.has(1.0) && !limit.has(2.0));
    }
}
