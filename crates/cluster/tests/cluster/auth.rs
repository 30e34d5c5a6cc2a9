//! The credentials file: user and password, an nkey seed, a token, and a `.creds` file of an
//! operator-mode server, against servers that require them.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kanava_cluster::{ClusterError, ClusterStore};
use nkeys::KeyPair;
use serde_json::json;

use crate::harness::{Options, Server, config, file};

async fn secured(authorization: &str) -> Server {
    Server::start(Options {
        jetstream: true,
        config: Some(authorization.to_owned()),
    })
    .await
}

async fn connect(server: &Server, credentials: &str) -> Result<ClusterStore, ClusterError> {
    let (_dir, path) = file(credentials);
    let mut config = config(vec![server.url.clone()], "n");
    config.credentials = Some(path);
    ClusterStore::connect(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_and_a_wrong_password() {
    let server =
        secured("authorization { users = [ { user: kanava, password: \"s3:cret\" } ] }\n").await;
    connect(&server, "kanava:s3:cret\n").await.unwrap();
    let error = connect(&server, "kanava:wrong").await.err().unwrap();
    assert!(matches!(error, ClusterError::Auth { .. }), "{error:?}");
    assert!(
        error.to_string().contains("--cluster-credentials"),
        "{error}"
    );
    assert!(
        !error.to_string().contains("wrong"),
        "the secret is not shown"
    );
    let none = ClusterStore::connect(config(vec![server.url.clone()], "n")).await;
    assert!(matches!(none, Err(ClusterError::Auth { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_seed() {
    let user = KeyPair::new_user();
    let server = secured(&format!(
        "authorization {{ users = [ {{ nkey: {} }} ] }}\n",
        user.public_key()
    ))
    .await;
    connect(&server, &format!("{}\n", user.seed().unwrap()))
        .await
        .unwrap();
    let stranger = KeyPair::new_user().seed().unwrap();
    let error = connect(&server, &stranger).await.err().unwrap();
    assert!(matches!(error, ClusterError::Auth { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token() {
    let server = secured("authorization { token: \"t0ken\" }\n").await;
    connect(&server, " t0ken\n").await.unwrap();
    let error = connect(&server, "other").await.err().unwrap();
    assert!(matches!(error, ClusterError::Auth { .. }), "{error:?}");
}

/// A NATS JWT (`ed25519-nkey`) of `claims`, signed by `issuer`.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let claims = json!({
        "jti": format!("KANAVA{iat}{}", &subject[1..12]),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signed = format!("{}.{}", encode(&header), encode(&claims));
    let signature = URL_SAFE_NO_PAD.encode(issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_of_an_operator_mode_server() {
    let operator = KeyPair::new_operator();
    let account = KeyPair::new_account();
    let user = KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "kanava-operator",
        json!({"type": "operator", "version": 2}),
    );
    let unlimited = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "kanava",
        json!({"limits": unlimited, "type": "account", "version": 2}),
    );
    let system = KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        json!({"type": "account", "version": 2}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "kanava-node",
        json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
               "type": "user", "version": 2}),
    );
    let server = secured(&format!(
        "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {sys}: \"{system_jwt}\"\n  {}: \"{account_jwt}\"\n}}\n",
        account.public_key(),
        sys = system.public_key(),
    ))
    .await;
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
        user.seed().unwrap()
    );
    connect(&server, &creds)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log_tail()));
    let stranger = KeyPair::new_user();
    let forged = creds.replace(&user.seed().unwrap(), &stranger.seed().unwrap());
    let error = connect(&server, &forged).await.err().unwrap();
    assert!(matches!(error, ClusterError::Auth { .. }), "{error:?}");
}
