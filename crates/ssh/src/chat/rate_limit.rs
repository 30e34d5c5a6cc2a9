//! Token buckets: the per-user limits, shared by all their connections and sessions, on
//! messages (whose burst lets a pasted block through), room announcements and rooms created;
//! and the byte rate limit of a connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use kanava_core::Nick;

/// Messages a user may send at once: a pasted block of this many lines goes through.
const BURST: f64 = 20.0;

/// Messages per second a user may keep sending after the burst.
const RATE: f64 = 2.0;

/// Announcements (`/away`, `/back`, `/topic`) a user may make at once, at least.
const ANNOUNCEMENT_BURST: f64 = 3.0;

/// Users tracked per limit before buckets that are full again are forgotten.
const TRACKED_USERS: usize = 10_000;

/// What each user may do, limited over all their connections and sessions: messages, room
/// announcements, and rooms created.
pub(crate) struct RateLimits {
    messages: Buckets,
    announcements: Buckets,
    new_rooms: Buckets,
}

impl RateLimits {
    /// The limits, with `rooms_per_hour` new rooms per user (all of them at once, at most) and
    /// `announcements_per_minute` (after a burst of at least three).
    pub(crate) fn new(rooms_per_hour: u32, announcements_per_minute: u32) -> Self {
        let rooms = f64::from(rooms_per_hour.max(1));
        let announcements = f64::from(announcements_per_minute.max(1));
        Self {
            messages: Buckets::new(BURST, RATE),
            announcements: Buckets::new(
                announcements.max(ANNOUNCEMENT_BURST),
                announcements / 60.0,
            ),
            new_rooms: Buckets::new(rooms, rooms / 3600.0),
        }
    }

    /// Whether `nick` may send a message now (taking a token if so).
    pub(crate) fn allow(&self, nick: &Nick) -> bool {
        self.messages.take(nick)
    }

    /// Whether `nick` may make an announcement to a room now: away, back, a topic.
    pub(crate) fn allow_announcement(&self, nick: &Nick) -> bool {
        self.announcements.take(nick)
    }

    /// Whether `nick` may create a room now.
    pub(crate) fn allow_new_room(&self, nick: &Nick) -> bool {
        self.new_rooms.take(nick)
    }
}

/// One token bucket per user.
struct Buckets {
    burst: f64,
    rate: f64,
    users: Mutex<HashMap<String, TokenBucket>>,
}

impl Buckets {
    fn new(burst: f64, rate: f64) -> Self {
        Self {
            burst,
            rate,
            users: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, nick: &Nick) -> bool {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if users.len() >= TRACKED_USERS {
            users.retain(|_, bucket| !bucket.is_full());
        }
        users
            .entry(nick.key())
            .or_insert_with(|| TokenBucket::new(self.burst, self.rate))
            .take(1.0)
    }
}

/// A token bucket: `burst` at once, then `rate` per second.
pub(crate) struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(burst: f64, rate: f64) -> Self {
        Self {
            tokens: burst,
            burst,
            rate,
            last: Instant::now(),
        }
    }

    /// Whether `amount` tokens are there now, without taking them.
    pub(crate) fn has(&self, amount: f64) -> bool {
        let refill = self.last.elapsed().as_secs_f64() * self.rate;
        (self.tokens + refill).min(self.burst) >= amount
    }

    /// Puts back `amount` tokens taken for something that did not happen.
    pub(crate) fn give(&mut self, amount: f64) {
        self.tokens = (self.tokens + amount).min(self.burst);
    }

    pub(crate) fn is_full(&self) -> bool {
        self.tokens + self.last.elapsed().as_secs_f64() * self.rate >= self.burst
    }

    /// Takes `amount` tokens if there are that many; says whether it did.
    pub(crate) fn take(&mut self, amount: f64) -> bool {
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
        let mut limit = TokenBucket::new(BURST, RATE);
        assert!((0..20).all(|_| limit.take(1.0)), "a 20-line paste");
        assert!(!limit.take(1.0));
        limit.last -= Duration::from_secs(1);
        assert!(limit.take(1.0) && limit.take(1.0));
        assert!(!limit.take(1.0));
    }
}
