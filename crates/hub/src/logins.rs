//! Logging in under a name, the same for every transport: names are bound by trust on first
//! use in the one store, new bindings are rate-limited per source address (an IPv4 address or
//! IPv6 /64) over every transport together, so that one address cannot squat thousands of
//! names while a classroom behind one NAT still gets in; and a refused login says why.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use kanava_core::{Claim, IdentityKey, KeySharing, Nick, NickError, source_of};

use crate::{Accounts, HubError, TokenBucket};

/// Sources tracked before the buckets that are full again are forgotten.
const TRACKED_SOURCES: usize = 10_000;

/// Why a login was refused, as the client is told ([`reason`](Self::reason)) and counted
/// ([`label`](Self::label)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    /// The name asked for is not a valid chat name.
    BadName,
    /// The name is bound to other keys; this is its spelling as bound.
    BoundToOther(Nick),
    /// The key holds another name (which is not said), and keys hold one name each.
    KeyHoldsName,
    /// The source made its new bindings for now.
    BindingRate,
    /// The key is banned.
    Banned,
    /// The store could not answer (logged on the server); nothing was bound.
    Unavailable,
}

impl LoginRefusal {
    /// The metric label: `bad_name`, `bound`, `key_holds_name`, `binding_rate`, `banned` or
    /// `unavailable`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::BadName => "bad_name",
            Self::BoundToOther(_) => "bound",
            Self::KeyHoldsName => "key_holds_name",
            Self::BindingRate => "binding_rate",
            Self::Banned => "banned",
            Self::Unavailable => "unavailable",
        }
    }

    /// Every label, for registering metrics at zero.
    pub const LABELS: [&'static str; 6] = [
        "bound",
        "key_holds_name",
        "bad_name",
        "binding_rate",
        "banned",
        "unavailable",
    ];

    /// What the client is told: one line without a prefix or line ending, that never names the
    /// holder of a key. Transports may add their own hints (SSH says how to pick a key).
    pub fn reason(&self) -> String {
        match self {
            Self::BadName => NickError.to_string(),
            Self::BoundToOther(nick) => format!(
                "{nick} is bound to another key; choose another name, or let this key in with \
                 /key add from a session of {nick}"
            ),
            Self::KeyHoldsName => "this key already holds another name; log in under that \
                                   name, or use another key"
                .to_owned(),
            Self::BindingRate => "too many new names from your address; try again later, or \
                                  log in under a name your key already holds"
                .to_owned(),
            Self::Banned => "this key is banned".to_owned(),
            Self::Unavailable => "names cannot be checked just now; try again later".to_owned(),
        }
    }
}

impl std::fmt::Display for LoginRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason())
    }
}

/// The binding rules and per-source limits for every transport; one instance per server,
/// cloned into each transport, so SSH and web share one budget per source. Cheap to clone.
#[derive(Clone)]
pub struct Logins {
    inner: Arc<Inner>,
}

struct Inner {
    accounts: Accounts,
    sharing: KeySharing,
    bindings: BindingLimits,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logins")
            .field("sharing", &self.inner.sharing)
            .finish_non_exhaustive()
    }
}

impl Logins {
    /// Logins over `accounts`, with keys shared between names or not per `sharing`, and new
    /// bindings limited to `bindings_burst` at once then `bindings_per_hour` per source
    /// (`bindings_per_hour` 0 turns the limit off).
    pub fn new(
        accounts: Accounts,
        sharing: KeySharing,
        bindings_burst: u32,
        bindings_per_hour: u32,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                accounts,
                sharing,
                bindings: BindingLimits::new(bindings_burst, bindings_per_hour),
            }),
        }
    }

    /// Whether one key may hold several names.
    pub fn sharing(&self) -> KeySharing {
        self.inner.sharing
    }

    /// Before any proof of possession (SSH checks this when a key is offered): whether `key`
    /// may log in as `name` from `peer`. Refuses a bad name, a banned key, a name bound to
    /// other keys (a key pending on the name passes), and a new name past the source's limit,
    /// without taking from it.
    pub async fn check(
        &self,
        name: &str,
        key: &IdentityKey,
        peer: IpAddr,
    ) -> Result<Nick, LoginRefusal> {
        let nick = Nick::new(name).map_err(|_| LoginRefusal::BadName)?;
        self.refuse_banned(key, peer).await?;
        let bound = self
            .inner
            .accounts
            .identity(nick.clone())
            .await
            .map_err(unavailable)?;
        match bound {
            Some(bound)
                if !bound.holds(&key.fingerprint) && !bound.awaits(&key.fingerprint, now_ms()) =>
            {
                Err(LoginRefusal::BoundToOther(bound.nick))
            }
            None if !self.inner.bindings.allows(peer) => Err(LoginRefusal::BindingRate),
            _ => Ok(nick),
        }
    }

    /// After the client proved it holds `key`: binds the name by trust on first use, confirms
    /// a pending key, or accepts a key the name already holds; takes from the source's binding
    /// budget only for a new binding. Returns the name as asked for and what the claim did
    /// ([`Claim::Bound`], [`Claim::Yours`] or [`Claim::Confirmed`]).
    pub async fn login(
        &self,
        name: &str,
        key: IdentityKey,
        peer: IpAddr,
    ) -> Result<(Nick, Claim), LoginRefusal> {
        let nick = Nick::new(name).map_err(|_| LoginRefusal::BadName)?;
        self.refuse_banned(&key, peer).await?;
        let accounts = &self.inner.accounts;
        let bindings = &self.inner.bindings;
        // Only a new binding takes from the source's limit; a login under a name the key
        // holds (or is pending on) never does.
        let new_name = accounts
            .identity(nick.clone())
            .await
            .map_err(unavailable)?
            .is_none();
        if new_name && !bindings.take(peer) {
            return Err(LoginRefusal::BindingRate);
        }
        let claim = accounts
            .claim_identity(nick.clone(), key, self.inner.sharing)
            .await;
        if new_name && !matches!(claim, Ok(Claim::Bound)) {
            bindings.give_back(peer);
        }
        match claim.map_err(unavailable)? {
            claim @ (Claim::Bound | Claim::Yours | Claim::Confirmed) => Ok((nick, claim)),
            Claim::Taken(_) => {
                let spelling = accounts.identity(nick.clone()).await.map_err(unavailable)?;
                Err(LoginRefusal::BoundToOther(
                    spelling.map_or(nick, |i| i.nick),
                ))
            }
            Claim::KeyHoldsName(_) => Err(LoginRefusal::KeyHoldsName),
        }
    }

    /// Refuses `key` if it is banned now.
    async fn refuse_banned(&self, key: &IdentityKey, peer: IpAddr) -> Result<(), LoginRefusal> {
        let ban = self
            .inner
            .accounts
            .ban_of(key.fingerprint.clone(), now_ms())
            .await
            .map_err(unavailable)?;
        if ban.is_some() {
            tracing::info!(%peer, fingerprint = %key.fingerprint, "banned key refused");
            return Err(LoginRefusal::Banned);
        }
        Ok(())
    }
}

/// A store failure during a login, logged here so that the refusal need not carry it.
fn unavailable(error: HubError) -> LoginRefusal {
    tracing::warn!(%error, "login refused: the store failed");
    LoginRefusal::Unavailable
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// New name bindings each source may make: `burst` at once, then `per_hour`.
struct BindingLimits {
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
    burst: f64,
    per_second: f64,
}

impl BindingLimits {
    /// Limits of `burst` bindings at once and `per_hour` after; `per_hour` 0 turns them off.
    fn new(burst: u32, per_hour: u32) -> Self {
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
    fn allows(&self, peer: IpAddr) -> bool {
        self.with_bucket(peer, |bucket| bucket.has(1.0))
            .unwrap_or(true)
    }

    /// Takes one new binding from `peer`'s source; says whether it had one.
    fn take(&self, peer: IpAddr) -> bool {
        self.with_bucket(peer, |bucket| bucket.take(1.0))
            .unwrap_or(true)
    }

    /// Gives back a binding taken for a claim that bound nothing.
    fn give_back(&self, peer: IpAddr) {
        self.with_bucket(peer, |bucket| bucket.give(1.0));
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
    fn reasons_are_one_line_and_never_name_the_holder_of_a_key() {
        assert!(!LoginRefusal::KeyHoldsName.reason().contains("alice"));
        let bound = LoginRefusal::BoundToOther(Nick::new("alice").unwrap()).reason();
        assert!(
            bound.starts_with("alice is bound to another key"),
            "{bound}"
        );
        assert!(
            LoginRefusal::BadName
                .reason()
                .contains("1 to 16 characters")
        );
        let all = [
            LoginRefusal::BadName,
            LoginRefusal::BoundToOther(Nick::new("alice").unwrap()),
            LoginRefusal::KeyHoldsName,
            LoginRefusal::BindingRate,
            LoginRefusal::Banned,
            LoginRefusal::Unavailable,
        ];
        for refusal in &all {
            let reason = refusal.reason();
            assert!(!reason.contains(['\r', '\n']) && !reason.starts_with("kanava"));
            assert!(LoginRefusal::LABELS.contains(&refusal.label()));
        }
    }
}
