//! Logins over a real SQLite store: the binding rules every transport shares, and the
//! per-source limit on new names that two transports draw from together.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kanava_core::{Ban, Claim, HistoryLimits, IdentityKey, KeySharing, Nick};
use kanava_hub::{Hub, HubConfig, LoginRefusal, Logins};
use kanava_store::SqliteStore;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn hub_at(dir: &std::path::Path) -> Hub {
    let store = SqliteStore::open(&dir.join("kanava.db"), HistoryLimits::default()).unwrap();
    Hub::new(Arc::new(store), HubConfig::default())
}

/// A key as a transport would hand it over (the store does not parse it).
fn key(n: u32) -> IdentityKey {
    IdentityKey {
        fingerprint: format!("SHA256:key{n}"),
        public_key: format!("ssh-ed25519 AAAAkey{n}"),
        added_ms: now_ms(),
        pending: false,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn nick(s: &str) -> Nick {
    Nick::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_transports_share_one_binding_budget_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_at(dir.path());
    // One instance, cloned into two transports, as the server does for SSH and the web.
    let ssh = Logins::new(hub.accounts(), KeySharing::OneNamePerKey, 2, 60);
    let web = ssh.clone();
    let attacker = ip("127.0.0.2");
    let (name, claim) = ssh.login("a1", key(1), attacker).await.unwrap();
    assert_eq!((name.as_str(), claim), ("a1", Claim::Bound));
    let (_, claim) = web.login("a2", key(2), attacker).await.unwrap();
    assert_eq!(claim, Claim::Bound);
    assert_eq!(
        ssh.check("a3", &key(3), attacker).await,
        Err(LoginRefusal::BindingRate),
        "the web's binding counted against the source over SSH"
    );
    assert_eq!(
        web.login("a3", key(3), attacker).await,
        Err(LoginRefusal::BindingRate)
    );
    assert_eq!(
        hub.accounts().identity(nick("a3")).await.unwrap(),
        None,
        "a refused login binds nothing"
    );
    // A name the key already holds is never limited; another source is not limited.
    assert_eq!(
        web.login("A1", key(1), attacker).await.unwrap().1,
        Claim::Yours
    );
    assert_eq!(ssh.check("a1", &key(1), attacker).await, Ok(nick("a1")));
    let other = ip("127.0.0.3");
    assert_eq!(
        web.login("a3", key(3), other).await.unwrap().1,
        Claim::Bound
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_that_binds_nothing_gives_its_binding_back() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_at(dir.path());
    let logins = Logins::new(hub.accounts(), KeySharing::OneNamePerKey, 1, 60);
    let peer = ip("127.0.0.2");
    // Bound from elsewhere, so that the refused key's source spent nothing.
    logins
        .login("alice", key(1), ip("127.0.0.9"))
        .await
        .unwrap();
    assert_eq!(
        logins.login("bob", key(1), peer).await,
        Err(LoginRefusal::KeyHoldsName),
        "one key, one name"
    );
    assert_eq!(
        logins.login("carol", key(2), peer).await.unwrap().1,
        Claim::Bound,
        "the refused claim did not use up the source's one binding"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_bound_to_another_key_is_refused_with_its_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_at(dir.path());
    let logins = Logins::new(hub.accounts(), KeySharing::OneNamePerKey, 30, 60);
    let peer = ip("127.0.0.2");
    logins.login("Alice", key(1), peer).await.unwrap();
    let refused = logins.check("alice", &key(2), peer).await.unwrap_err();
    assert_eq!(refused, LoginRefusal::BoundToOther(nick("Alice")));
    assert!(
        refused
            .reason()
            .starts_with("Alice is bound to another key")
    );
    assert_eq!(
        logins.login("alice", key(2), peer).await,
        Err(LoginRefusal::BoundToOther(nick("Alice")))
    );
    assert_eq!(
        logins.check("al ice", &key(2), peer).await,
        Err(LoginRefusal::BadName)
    );
    assert_eq!(
        logins.login("", key(2), peer).await,
        Err(LoginRefusal::BadName)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_key_is_let_in_and_confirmed_by_its_first_login() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_at(dir.path());
    let logins = Logins::new(hub.accounts(), KeySharing::OneNamePerKey, 30, 60);
    let peer = ip("127.0.0.2");
    logins.login("alice", key(1), peer).await.unwrap();
    let pending = IdentityKey {
        pending: true,
        ..key(2)
    };
    hub.accounts()
        .add_key(nick("alice"), pending, KeySharing::OneNamePerKey)
        .await
        .unwrap();
    assert_eq!(
        logins.check("alice", &key(2), peer).await,
        Ok(nick("alice"))
    );
    assert_eq!(
        logins.login("alice", key(2), peer).await.unwrap().1,
        Claim::Confirmed
    );
    assert_eq!(
        logins.login("alice", key(2), peer).await.unwrap().1,
        Claim::Yours
    );
    let identity = hub
        .accounts()
        .identity(nick("alice"))
        .await
        .unwrap()
        .unwrap();
    assert!(identity.holds("SHA256:key1") && identity.holds("SHA256:key2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_banned_key_is_refused_before_and_after_its_proof() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_at(dir.path());
    let logins = Logins::new(hub.accounts(), KeySharing::OneNamePerKey, 30, 60);
    let peer = ip("127.0.0.2");
    logins.login("mallory", key(1), peer).await.unwrap();
    hub.accounts()
        .ban(vec![Ban {
            fingerprint: "SHA256:key1".into(),
            nick: nick("mallory"),
            by: nick("op"),
            since_ms: now_ms(),
            until_ms: None,
        }])
        .await
        .unwrap();
    assert_eq!(
        logins.check("mallory", &key(1), peer).await,
        Err(LoginRefusal::Banned)
    );
    assert_eq!(
        logins.login("mallory", key(1), peer).await,
        Err(LoginRefusal::Banned)
    );
    assert_eq!(
        logins.login("fresh", key(1), peer).await,
        Err(LoginRefusal::Banned),
        "a banned key cannot bind a new name either"
    );
    assert_eq!(LoginRefusal::Banned.label(), "banned");
    assert_eq!(
        logins.login("other", key(2), peer).await.unwrap().1,
        Claim::Bound
    );
}
