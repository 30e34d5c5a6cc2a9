//! Binding names that cannot be abused: new trust-on-first-use bindings are rate-limited per
//! source address (an IPv4 address or IPv6 /64), so one address cannot squat thousands of
//! names while a classroom behind one NAT still gets in; and a refused login says why, in an
//! SSH banner the client shows before it gives up (OpenSSH prints it on stderr).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use kanava_core::{Nick, NickError, source_of};

use crate::chat::rate_limit::TokenBucket;

/// Sources tracked before the buckets that are full again are forgotten.
const TRACKED_SOURCES: usize = 10_000;

/// New name bindings each source may make: `burst` at once, then `per_hour`.
pub(crate) struct BindingLimits {
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
    burst: f64,
    per_second: f64,
}

impl BindingLimits {
    /// Limits of `burst` bindings at once and `per_hour` after; `per_hour` 0 turns them off.
    pub(crate) fn new(burst: u32, per_hour: u32) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_hour) / 3600.0,
        }
    }

    fn with_bucket<T>(&self, peer: IpAddr, f: impl FnOnce(&mut TokenBucket) -> T) -> Option<T> {
        if self.per_second == 0.0 {
            return None;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= TRACKED_SOURCES {
            buckets.retain(|_, bucket| !bucket.is_full());
        }
        let bucket = buckets
            .entry(source_of(peer))
            .or_insert_with(|| TokenBucket::new(self.burst, self.per_second));
        Some(f(bucket))
    }

    /// Whether `peer`'s source may bind a new name now, without taking it.
    pub(crate) fn allows(&self, peer: IpAddr) -> bool {
        self.with_bucket(peer, |bucket| bucket.has(1.0))
            .unwrap_or(true)
    }

    /// Takes one new binding from `peer`'s source; says whether it had one.
    pub(crate) fn take(&self, peer: IpAddr) -> bool {
        self.with_bucket(peer, |bucket| bucket.take(1.0))
            .unwrap_or(true)
    }

    /// Gives back a binding taken for a claim that bound nothing.
    pub(crate) fn give_back(&self, peer: IpAddr) {
        self.with_bucket(peer, |bucket| bucket.give(1.0));
    }
}

/// Why a login was refused, as the client is told (a banner) and counted
/// (`kanava_ssh_logins_refused_total{reason}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoginRefusal {
    /// The user name is not a valid chat name.
    BadName,
    /// The name is bound to other keys.
    BoundToOther(Nick),
    /// The key holds another name (which is not said), and keys hold one name each.
    KeyHoldsName,
    /// The source made its new bindings for now.
    BindingRate,
    /// The key is banned.
    Banned,
}

impl LoginRefusal {
    /// The metric label.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::BadName => "bad_name",
            Self::BoundToOther(_) => "bound",
            Self::KeyHoldsName => "key_holds_name",
            Self::BindingRate => "binding_rate",
            Self::Banned => "banned",
        }
    }

    /// What the client is told, one line.
    pub(crate) fn banner(&self) -> String {
        let text = match self {
            Self::BadName => format!("kanava: {NickError}; log in as NAME@host"),
            Self::BoundToOther(nick) => {
                format!("kanava: {nick} is bound to another key; use -i KEY or another name")
            }
            Self::KeyHoldsName => "kanava: this key already holds another name; log in under \
                                   that name, or use another key"
                .to_owned(),
            Self::BindingRate => "kanava: too many new names from your address; try again \
                                  later, or log in under a name your key already holds"
                .to_owned(),
            Self::Banned => "kanava: this key is banned".to_owned(),
        };
        text + "\r\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_per_source_and_a_refund_restores_it() {
        let limits = BindingLimits::new(2, 60);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert!(limits.take(a) && limits.take(a));
        assert!(!limits.allows(a) && !limits.take(a));
        assert!(
            limits.allows(b) && limits.take(b),
            "another source is not limited"
        );
        limits.give_back(a);
        assert!(limits.take(a));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(limits.take(v6) && limits.take(same_64));
        assert!(!limits.take(v6), "one IPv6 /64 is one source");
        let off = BindingLimits::new(1, 0);
        assert!((0..100).all(|_| off.take(a)));
    }

    #[test]
    fn banners_never_name_the_holder_of_a_key() {
        assert!(!LoginRefusal::KeyHoldsName.banner().contains("alice"));
        let bound = LoginRefusal::BoundToOther(Nick::new("alice").unwrap()).banner();
        assert!(bound.contains("alice is bound to another key"), "{bound}");
        assert!(
            LoginRefusal::BadName
                .banner()
                .contains("1 to 16 characters")
        );
    }
}
