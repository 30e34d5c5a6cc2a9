//! The browser chat's server side, driven as a bot would drive it: the kanava web protocol at
//! `/kanava` (docs/web-protocol.md) with a key signed by the real `ssh-keygen -Y sign`, next to
//! the real OpenSSH client and a Python `websockets` Mles client; and the pages of the front
//! end on the same listener.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::chat::LineSession;
use crate::ssh::{ssh, stderr, stdout};
use crate::support::*;

/// An ed25519 key made by `ssh-keygen`, in a directory of its own.
struct Key {
    dir: tempfile::TempDir,
}

impl Key {
    fn new() -> Key {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-t", "ed25519", "-C", "kanava-web", "-f"])
            .arg(dir.path().join("id"))
            .status()
            .expect("ssh-keygen (openssh-client) is installed");
        assert!(status.success());
        Key { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("id")
    }

    fn public(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("id.pub"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `printf '%s\n%s' NAME NONCE | ssh-keygen -Y sign -q -n kanava-web -f KEY`, as the
    /// protocol's document tells bots.
    fn sign(&self, name: &str, nonce: &str) -> String {
        ssh_keygen_sign(&self.path(), "kanava-web", &format!("{name}\n{nonce}"))
    }
}

/// A bot on the web protocol.
struct Bot {
    ws: Ws,
    nonce: String,
    hello: Value,
    /// The name logged in as.
    name: String,
}

impl Bot {
    /// Connects to `/kanava` (from `source`, if given) and reads the hello.
    async fn connect(server: &Kanava, source: Option<&str>) -> Bot {
        let mut client = server.client();
        if let Some(source) = source {
            client = client.with_source(source);
        }
        let request = format!("wss://localhost:{}/kanava", server.mles.port())
            .into_client_request()
            .unwrap();
        let (mut ws, response) = tokio_tungstenite::client_async(request, client.tls().await)
            .await
            .expect("the upgrade to /kanava");
        assert!(response.headers().get("Sec-WebSocket-Protocol").is_none());
        let hello = next_json(&mut ws).await;
        assert_eq!(hello["type"], "hello", "{hello}");
        assert_eq!(hello["version"], 1);
        let nonce = hello["nonce"].as_str().unwrap().to_owned();
        Bot {
            ws,
            nonce,
            hello,
            name: String::new(),
        }
    }

    async fn send(&mut self, request: Value) {
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
    }

    /// Logs in as `name` with `key`; returns the server's answer (welcome or refused).
    async fn login(&mut self, name: &str, key: &Key) -> Value {
        let signature = key.sign(name, &self.nonce);
        self.name = name.to_owned();
        self.send(
            json!({"type": "login", "name": name, "key": key.public(), "signature": signature}),
        )
        .await;
        self.next().await
    }

    /// Connects and logs in, expecting a welcome.
    async fn logged_in(server: &Kanava, source: Option<&str>, name: &str, key: &Key) -> Bot {
        let mut bot = Bot::connect(server, source).await;
        let welcome = bot.login(name, key).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        bot
    }

    async fn next(&mut self) -> Value {
        next_json(&mut self.ws).await
    }

    /// Skips frames until one of type `kind` comes, and returns it.
    async fn until_type(&mut self, kind: &str) -> Value {
        loop {
            let message = self.next().await;
            if message["type"] == kind {
                return message;
            }
        }
    }

    /// The reply to request `id` (ok, error or a typed reply), skipping events.
    async fn reply(&mut self, id: u64) -> Value {
        loop {
            let message = self.next().await;
            if message["id"] == id && message["type"] != "pm" {
                return message;
            }
        }
    }

    /// Skips frames until an event with this text comes.
    async fn event_with_text(&mut self, text: &str) -> Value {
        loop {
            let message = self.next().await;
            if message["type"] == "event" && message["text"] == text {
                return message;
            }
        }
    }

    /// Joins `room` (after `after`); returns `joined` and the events that follow it up to the
    /// reply of a `rooms` request sent right after (so the backlog is complete).
    async fn join(&mut self, room: &str, after: Option<u64>) -> (Value, Vec<Value>) {
        let mut request = json!({"type": "join", "room": room, "id": 1});
        if let Some(after) = after {
            request["after"] = after.into();
        }
        self.send(request).await;
        self.send(json!({"type": "rooms", "id": 2})).await;
        let joined = self.reply(1).await;
        assert_eq!(joined["type"], "joined", "{joined}");
        let mut events = Vec::new();
        loop {
            let message = self.next().await;
            if message["id"] == 2 {
                return (joined, events);
            }
            if message["type"] == "event" {
                events.push(message);
            }
        }
    }

    /// Sends `text` to `room` as request `id`; returns the `ok` and the message's own event,
    /// which comes before it.
    async fn say(&mut self, room: &str, text: &str, id: u64) -> (Value, Value) {
        self.send(json!({"type": "send", "room": room, "text": text, "id": id}))
            .await;
        let mut own = None;
        loop {
            let message = self.next().await;
            if message["type"] == "event" && message["from"] == self.name && own.is_none() {
                own = Some(message);
            } else if message["id"] == id {
                assert_eq!(message["type"], "ok", "{message}");
                return (message, own.expect("the own event before the ok"));
            }
        }
    }
}

/// The next text frame as JSON, skipping pings; panics at a close or after `WAIT`.
async fn next_json(ws: &mut Ws) -> Value {
    match recv(ws).await {
        Message::Text(text) => serde_json::from_str(text.as_str()).expect("the server sends JSON"),
        other => panic!("expected a JSON text frame, got {}", describe(&other)),
    }
}

/// A Python `websockets` Mles client in `room` as `uid`: sends `say` once it has seen
/// `wait_for` (a text frame), then prints every text frame it received, one per line, and
/// exits.
fn python_mles(
    server: &Kanava,
    uid: &str,
    room: &str,
    wait_for: &str,
    say: &str,
) -> std::process::Child {
    let python = std::env::var("KANAVA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import asyncio, json, ssl, sys
import websockets
url, ca, uid, room, wait_for, say = sys.argv[1:7]
async def main():
    context = ssl.create_default_context(cafile=ca)
    async with websockets.connect(url, ssl=context, subprotocols=["mles-websocket"],
                                  server_hostname="localhost") as ws:
        await ws.send(json.dumps({"uid": uid, "channel": room}))
        print("joined", flush=True)
        async with asyncio.timeout(10):
            while True:
                frame = await ws.recv()
                if isinstance(frame, str):
                    print(json.dumps(frame), flush=True)
                    if frame == wait_for:
                        break
        await ws.send(say)
        await asyncio.sleep(0.5)
asyncio.run(main())
"#;
    Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(format!("wss://127.0.0.1:{}/", server.mles.port()))
        .arg(server.cert_path())
        .args([uid, room, wait_for, say])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"))
}

#[tokio::test]
async fn a_bot_logs_in_and_talks_with_ssh_and_python_mles_verified_with_seqs() {
    let server = Start::new().start();
    let room = channel("webtalk");
    let key = Key::new();
    let ssh_key = Key::new();

    let mut bot = Bot::connect(&server, None).await;
    assert!(bot.hello["limits"]["max_text"].as_u64().unwrap() >= 4096);
    let welcome = bot.login("webbot", &key).await;
    assert_eq!(welcome["outcome"], "bound", "{welcome}");
    assert_eq!(welcome["name"], "webbot");
    assert!(
        welcome["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert!(key.public().starts_with(welcome["key"].as_str().unwrap()));

    // A Python Mles client joins, and waits for the bot's message before answering.
    let mut python = python_mles(
        &server,
        "pyuser",
        &room,
        "hello from the web",
        "hi web, from python",
    );
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(python.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert_eq!(line.trim(), "joined", "python: {line}");
    server.wait_metric("kanava_members", 1.0).await;

    let (joined, _) = bot.join(&format!("#{room}"), None).await;
    assert_eq!(joined["room"], room.as_str());
    assert_eq!(joined["resumed"], false);
    assert_eq!(
        joined["members"],
        json!([{"name": "pyuser", "verified": false}, {"name": "webbot", "verified": true}]),
        "{joined}"
    );

    let (ok, own) = bot.say(&room, "hello from the web", 10).await;
    assert_eq!(own["text"], "hello from the web");
    assert_eq!(
        (own["from"].clone(), own["verified"].clone()),
        (json!("webbot"), json!(true))
    );
    assert_eq!(own["seq"], ok["seq"], "{ok} {own}");
    let mine = own["seq"].as_u64().unwrap();

    // Python saw it, answered; the bot gets the answer, unverified, with a later seq.
    let answer = bot.event_with_text("hi web, from python").await;
    assert_eq!(answer["from"], "pyuser");
    assert_eq!(answer["verified"], false);
    assert_eq!(answer["kind"], "text");
    assert!(answer["seq"].as_u64().unwrap() > mine, "{answer}");
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        python.wait().unwrap();
        rest
    })
    .await
    .unwrap();
    assert!(
        rest.contains("\"hello from the web\""),
        "python got: {rest}"
    );

    // SSH sees the bot verified (no ~), and the bot sees SSH, verified too.
    let tail = ssh(&server, &[&ssh_key.path()], "alice", &["tail", &room]).await;
    assert!(
        stdout(&tail).contains("<webbot> hello from the web\n"),
        "{}{}",
        stdout(&tail),
        stderr(&tail)
    );
    assert!(
        stdout(&tail).contains("<~pyuser> hi web, from python\n"),
        "{}",
        stdout(&tail)
    );
    let say = ssh(
        &server,
        &[&ssh_key.path()],
        "alice",
        &["say", &format!("#{room}"), "/me waves at webbot"],
    )
    .await;
    assert!(say.status.success(), "{}", stderr(&say));
    let emote = bot.event_with_text("waves at webbot").await;
    assert_eq!(emote["kind"], "emote");
    assert_eq!(
        (emote["from"].clone(), emote["verified"].clone()),
        (json!("alice"), json!(true))
    );
    assert!(emote["seq"].as_u64().unwrap() > answer["seq"].as_u64().unwrap());

    // The bot's emote is stored as one: SSH shows it as such.
    bot.say(&room, "/me nods", 11).await;
    let tail = ssh(&server, &[&ssh_key.path()], "alice", &["tail", &room]).await;
    assert!(
        stdout(&tail).contains("** webbot nods"),
        "{}",
        stdout(&tail)
    );
}

#[tokio::test]
async fn events_reach_a_sender_in_seq_order_its_own_included() {
    let server = Start::new().start();
    let room = channel("weborder");
    let key = Key::new();
    let mut bot = Bot::logged_in(&server, None, "orderly", &key).await;
    bot.join(&room, None).await;
    let mut mles = server.client().join("burst", &room).await;
    // Others' messages sent just before the bot's own: the bot's own event must not come before
    // them (a client resuming after the highest seq it showed would then never get them).
    for round in 0..20u64 {
        for n in 0..5 {
            mles.send(text(&format!("burst {round}.{n}")))
                .await
                .unwrap();
        }
        bot.send(json!({"type": "send", "room": room, "text": format!("mine {round}"), "id": 1000 + round}))
            .await;
    }
    let mut seqs = Vec::new();
    let mut oks = 0;
    while oks < 20 || seqs.len() < 120 {
        let message = bot.next().await;
        match message["type"].as_str() {
            Some("event") => seqs.push(message["seq"].as_u64().unwrap()),
            Some("ok") => oks += 1,
            _ => {}
        }
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "events out of seq order: {seqs:?}"
    );
}

#[tokio::test]
async fn history_pages_reach_back_through_the_store() {
    let server = Start::new().start();
    let room = channel("webhistory");
    let key = Key::new();
    let mut bot = Bot::logged_in(&server, None, "pager", &key).await;
    bot.join(&room, None).await;
    for n in 0..12 {
        bot.say(&room, &format!("line {n}"), 100 + n).await;
    }
    let (_, events) = bot.join(&room, None).await;
    let latest = events.last().unwrap()["seq"].as_u64().unwrap();
    bot.send(json!({"type": "history", "room": room, "before": latest, "limit": 4, "id": 7}))
        .await;
    let page = bot.reply(7).await;
    assert_eq!(page["type"], "history", "{page}");
    assert_eq!(page["more"], true);
    let texts: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["line 7", "line 8", "line 9", "line 10"]);
    let oldest = page["events"][0]["seq"].as_u64().unwrap();
    bot.send(json!({"type": "history", "room": room, "before": oldest, "id": 8}))
        .await;
    let page = bot.reply(8).await;
    assert_eq!(page["more"], false, "{page}");
    let texts: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        (0..7).map(|n| format!("line {n}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn resuming_after_a_restart_gives_exactly_the_missing_events() {
    let data = tempfile::tempdir().unwrap();
    let room = channel("webresume");
    let key = Key::new();
    let server = Start::new().data(data.path()).start();
    let mut bot = Bot::logged_in(&server, None, "resumer", &key).await;
    bot.join(&room, None).await;
    let last = bot.say(&room, "before the restart", 1).await.1["seq"]
        .as_u64()
        .unwrap();
    drop(bot);
    assert!(server.terminate(), "a clean shutdown");

    let server = Start::new().data(data.path()).start();
    let mut mles = server.client().join("mlesuser", &room).await;
    for n in 0..3 {
        mles.send(text(&format!("missed {n}"))).await.unwrap();
    }
    server.wait_metric("kanava_frames_in_total", 3.0).await;
    let mut bot = Bot::connect(&server, None).await;
    assert_eq!(bot.login("resumer", &key).await["outcome"], "yours");
    let (joined, events) = bot.join(&room, Some(last)).await;
    assert_eq!(joined["resumed"], true, "{joined}");
    let got: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("join".to_owned(), String::new()),
            ("text".into(), "missed 0".into()),
            ("text".into(), "missed 1".into()),
            ("text".into(), "missed 2".into()),
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs[0] > last && seqs.windows(2).all(|w| w[0] < w[1]),
        "{seqs:?} after {last}"
    );
    // A seq from elsewhere (beyond the newest) starts afresh.
    let (joined, _) = bot.join(&room, Some(1 << 40)).await;
    assert_eq!(joined["resumed"], false, "{joined}");
    // Live from then on, nothing twice.
    mles.send(text("live")).await.unwrap();
    let live = bot.event_with_text("live").await;
    assert!(live["seq"].as_u64().unwrap() > *seqs.last().unwrap());
}

#[tokio::test]
async fn names_follow_the_ssh_rules_with_reasons() {
    let server = Start::new().start();
    let ssh_key = Key::new();
    let web_key = Key::new();
    let said = ssh(
        &server,
        &[&ssh_key.path()],
        "carol",
        &["say", "#lobby", "hi"],
    )
    .await;
    assert!(said.status.success(), "{}", stderr(&said));

    // A name bound to an SSH key is refused in the web, with the reason, and closed 1008.
    let mut bot = Bot::connect(&server, None).await;
    let refused = bot.login("carol", &web_key).await;
    assert_eq!(refused["type"], "refused", "{refused}");
    assert_eq!(refused["code"], "bound");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("carol is bound to another key"),
        "{refused}"
    );
    assert_eq!(close_frame(&mut bot.ws).await.0, CloseCode::Policy);

    // A signature over another nonce (a replay) or by another key proves nothing.
    let mut bot = Bot::connect(&server, None).await;
    let stale = web_key.sign("dave", "another-nonce");
    bot.send(json!({"type": "login", "name": "dave", "key": web_key.public(), "signature": stale}))
        .await;
    let refused = bot.next().await;
    assert_eq!(refused["code"], "bad_signature", "{refused}");
    let mut bot = Bot::connect(&server, None).await;
    let mles_namespace = ssh_keygen_sign(
        &web_key.path(),
        "kanava-mles",
        &format!("dave\n{}", bot.nonce),
    );
    bot.send(json!({"type": "login", "name": "dave", "key": web_key.public(), "signature": mles_namespace})).await;
    assert_eq!(bot.next().await["code"], "bad_signature");

    // The SSH user lets the browser key in; its first login confirms it.
    let mut carol = LineSession::open(&server, &ssh_key.path(), "carol").await;
    let added = carol.ask(&format!("/key add {}", web_key.public())).await;
    assert!(added.contains("is pending"), "{added}");
    let mut bot = Bot::connect(&server, None).await;
    let welcome = bot.login("carol", &web_key).await;
    assert_eq!(welcome["outcome"], "confirmed", "{welcome}");
    bot.send(json!({"type": "keys", "id": 3})).await;
    let keys = bot.reply(3).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2, "{keys}");
    assert!(
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["pending"] == false)
    );

    // A web key bound by the web keeps its name from SSH.
    let mut eve = Bot::connect(&server, None).await;
    let eve_key = Key::new();
    assert_eq!(eve.login("eve", &eve_key).await["outcome"], "bound");
    let taken = ssh(&server, &[&ssh_key.path()], "eve", &["say", "#lobby", "x"]).await;
    assert!(!taken.status.success());

    // The browser lets an SSH key in: pending until its first login over SSH, then active;
    // then the browser removes it again.
    let laptop = Key::new();
    eve.send(json!({"type": "key_add", "key": laptop.public(), "id": 20}))
        .await;
    let added = eve.reply(20).await;
    assert_eq!(
        (&added["type"], &added["outcome"]),
        (&json!("ok"), &json!("pending")),
        "{added}"
    );
    let said = ssh(
        &server,
        &[&laptop.path()],
        "eve",
        &["say", "#lobby", "from the laptop"],
    )
    .await;
    assert!(said.status.success(), "{}", stderr(&said));
    eve.send(json!({"type": "keys", "id": 21})).await;
    let keys = eve.reply(21).await;
    let listed: Vec<(bool, bool)> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["pending"].as_bool().unwrap(),
                k["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(false, true), (false, false)], "{keys}");
    eve.send(json!({"type": "key_remove", "fingerprint": added["fingerprint"], "id": 22}))
        .await;
    assert_eq!(eve.reply(22).await["type"], "ok");
    let refused = ssh(&server, &[&laptop.path()], "eve", &["say", "#lobby", "x"]).await;
    assert!(!refused.status.success());
    eve.send(json!({"type": "key_remove", "fingerprint": "SHA256:nothing", "id": 23}))
        .await;
    assert_eq!(eve.reply(23).await["code"], "not_found");
}

#[tokio::test]
async fn the_page_is_served_with_security_headers_gzip_and_etags() {
    let server = Start::new().start();
    let index = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/index.html")).unwrap();
    let get = |extra: String| {
        let client = server.client();
        async move {
            let mut tls = client.tls().await;
            tls.write_all(
                format!("GET /#dev HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut response = Vec::new();
            tokio::time::timeout(WAIT, tls.read_to_end(&mut response))
                .await
                .unwrap()
                .unwrap_or_default();
            let end = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("a head");
            let head = String::from_utf8(response[..end].to_vec()).unwrap();
            (head, response[end + 4..].to_vec())
        }
    };
    let (head, body) = get("Accept-Encoding: gzip, br\r\n".into()).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for header in [
        "Content-Type: text/html; charset=utf-8",
        "Content-Encoding: gzip",
        "Cache-Control: no-cache",
        "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        "X-Content-Type-Options: nosniff",
        "Referrer-Policy: no-referrer",
        "X-Frame-Options: DENY",
        "Cross-Origin-Opener-Policy: same-origin",
    ] {
        assert!(
            head.contains(&format!("\r\n{header}\r\n")),
            "{header} missing from {head}"
        );
    }
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut inflated)
        .unwrap();
    assert_eq!(inflated, index);
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("ETag: "))
        .expect("an ETag")
        .to_owned();
    let (head, body) = get(format!("If-None-Match: {etag}\r\n")).await;
    assert!(head.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{head}");
    assert!(body.is_empty());
    let (head, body) = get(String::new()).await;
    assert!(!head.contains("Content-Encoding"), "{head}");
    assert_eq!(body, index);
    assert!(
        server
            .metric("kanava_web_requests_total{type=\"page\"}")
            .await
            >= 3.0
    );
}

#[tokio::test]
async fn hostile_frames_are_refused_with_reasons_while_another_client_is_served() {
    let server = Start::new()
        .args(&["--ssh-max-message", "1000", "--handshake-timeout", "2s"])
        .start();
    let room = channel("webhostile");
    let attacker_key = Key::new();
    let mut attacker = Bot::connect(&server, Some("127.0.0.2")).await;
    assert_eq!(attacker.hello["limits"]["max_text"], 1000);

    // Before the login: only a login is taken.
    attacker.send(json!({"type": "rooms", "id": 1})).await;
    let refused = attacker.next().await;
    assert_eq!(
        (refused["code"].clone(), refused["id"].clone()),
        (json!("bad_request"), json!(1))
    );
    assert!(refused["reason"].as_str().unwrap().contains("log in first"));
    let welcome = attacker.login("mallory", &attacker_key).await;
    assert_eq!(welcome["type"], "welcome");

    // The legitimate user, from another address, throughout.
    let key = Key::new();
    let mut user = Bot::logged_in(&server, Some("127.0.0.3"), "honest", &key).await;
    user.join(&room, None).await;

    attacker.ws.send(Message::text("{not json")).await.unwrap();
    let error = attacker.next().await;
    assert_eq!(error["code"], "bad_request");
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON"),
        "{error}"
    );
    attacker
        .ws
        .send(Message::binary(vec![0u8; 64]))
        .await
        .unwrap();
    let error = attacker.next().await;
    assert_eq!(error["code"], "bad_request");
    assert!(
        error["reason"].as_str().unwrap().contains("binary"),
        "{error}"
    );
    attacker
        .send(json!({"type": "send", "room": room, "text": 5, "id": 9}))
        .await;
    assert_eq!(attacker.reply(9).await["code"], "bad_request");
    attacker
        .send(json!({"type": "join", "room": room, "id": 10}))
        .await;
    attacker.reply(10).await;
    attacker
        .send(json!({"type": "send", "room": room, "text": "x".repeat(1001), "id": 11}))
        .await;
    let too_large = attacker.reply(11).await;
    assert_eq!(too_large["code"], "too_large");
    assert!(
        too_large["reason"]
            .as_str()
            .unwrap()
            .contains("at most 1000 bytes"),
        "{too_large}"
    );

    // A flood of requests: past 20 a second they are refused with "rate".
    for id in 100..160 {
        attacker.send(json!({"type": "rooms", "id": id})).await;
    }
    let mut limited = 0;
    for id in 100..160 {
        let reply = attacker.reply(id).await;
        if reply["code"] == "rate" {
            limited += 1;
        }
    }
    assert!(limited >= 30, "{limited} of 60 refused");
    // A flood of messages: the SSH chat's burst of 20, then refused.
    for id in 200..240 {
        attacker
            .send(json!({"type": "send", "room": room, "text": "spam", "id": id}))
            .await;
    }
    let mut refused = 0;
    for id in 200..240 {
        if attacker.reply(id).await["code"] == "rate" {
            refused += 1;
        }
    }
    // One token went to the refused large message; a token or two may refill meanwhile.
    assert!(
        (17..=22).contains(&refused),
        "{refused} of 40 messages refused"
    );

    user.say(&room, "still served", 1).await;

    // A frame beyond max_text plus 1 KiB closes the attacker with 1009.
    attacker
        .ws
        .send(Message::text("x".repeat(1000 + 1024 + 1)))
        .await
        .unwrap();
    assert_eq!(close_frame(&mut attacker.ws).await.0, CloseCode::Size);
    user.say(&room, "still served after", 2).await;
    assert!(
        server
            .metric("kanava_web_refusals_total{code=\"rate\"}")
            .await
            >= 40.0
    );

    // A connection that never logs in is refused at the handshake deadline.
    let mut silent = Bot::connect(&server, Some("127.0.0.2")).await;
    let refused = silent.next().await;
    assert_eq!(refused["code"], "timeout", "{refused}");
    assert_eq!(close_frame(&mut silent.ws).await.0, CloseCode::Policy);
}

#[tokio::test]
async fn shutdown_closes_web_clients_with_1001() {
    let server = Start::new().start();
    let key = Key::new();
    let mut bot = Bot::logged_in(&server, None, "closer", &key).await;
    bot.join("lobby", None).await;
    // Shutdown: 1001.
    let pid = server.pid();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let (code, reason) = close_frame(&mut bot.ws).await;
    assert_eq!(code, CloseCode::Away, "{reason}");
    let _ = tokio::time::timeout(Duration::from_secs(5), bot.ws.next()).await;
    drop(server);
}

#[tokio::test]
async fn private_messages_and_topics_cross_between_web_and_ssh() {
    let server = Start::new().start();
    let (ssh_key, web_key, later_key) = (Key::new(), Key::new(), Key::new());
    let mut later = Bot::logged_in(&server, None, "later", &later_key).await;
    drop(later.ws.close(None).await);
    let mut carol = LineSession::open(&server, &ssh_key.path(), "carol").await;
    let mut bot = Bot::logged_in(&server, None, "webpm", &web_key).await;
    bot.join("lobby", None).await;

    // SSH to web, and web to SSH, live.
    carol.send("/msg webpm hello web").await;
    let pm = bot.until_type("pm").await;
    assert_eq!(
        (&pm["from"], &pm["to"], &pm["text"]),
        (&json!("carol"), &json!("webpm"), &json!("hello web")),
        "{pm}"
    );
    bot.send(json!({"type": "pm", "to": "carol", "text": "hello ssh", "id": 5}))
        .await;
    // The sender's own copy comes back as a pm event too, before the ok.
    let copy = bot.until_type("pm").await;
    assert_eq!(
        (&copy["from"], &copy["to"]),
        (&json!("webpm"), &json!("carol"))
    );
    let ok = bot.reply(5).await;
    assert_eq!(
        (&ok["type"], &ok["online"]),
        (&json!("ok"), &json!(true)),
        "{ok}"
    );
    carol
        .out_line("the web's PM", |l| l.ends_with("[PM from webpm] hello ssh"))
        .await;

    // Topics, both ways.
    bot.send(json!({"type": "topic", "room": "#lobby", "text": "web rules", "id": 6}))
        .await;
    let topic = bot.until_type("topic").await;
    assert_eq!(
        (&topic["text"], &topic["by"]),
        (&json!("web rules"), &json!("webpm"))
    );
    carol
        .out_line("the web's topic", |l| l.contains("web rules"))
        .await;
    carol.send("/topic ssh rules").await;
    let topic = bot.until_type("topic").await;
    assert_eq!(
        (&topic["text"], &topic["by"], &topic["room"]),
        (&json!("ssh rules"), &json!("carol"), &json!("lobby"))
    );

    // To a web user who is away: stored, and shown at the next login.
    bot.send(json!({"type": "pm", "to": "later", "text": "see you", "id": 7}))
        .await;
    let ok = bot.reply(7).await;
    assert_eq!(ok["online"], false, "{ok}");
    bot.send(json!({"type": "pm", "to": "nobody", "text": "x", "id": 8}))
        .await;
    assert_eq!(bot.reply(8).await["code"], "no_such_user");
    let mut later = Bot::logged_in(&server, None, "later", &later_key).await;
    let pm = later.until_type("pm").await;
    assert_eq!(
        (&pm["from"], &pm["text"]),
        (&json!("webpm"), &json!("see you"))
    );
}

#[tokio::test]
async fn an_ssh_operator_kicks_and_bans_a_web_user_who_is_told_why() {
    let (op_key, web_key) = (Key::new(), Key::new());
    let dir = tempfile::tempdir().unwrap();
    let ops = dir.path().join("ops");
    std::fs::write(&ops, format!("{}\n", op_key.public())).unwrap();
    let server = Start::new()
        .args(&["--ssh-ops", ops.to_str().unwrap()])
        .start();
    let mut op = LineSession::open(&server, &op_key.path(), "op").await;
    let mut web = Bot::logged_in(&server, None, "pest", &web_key).await;
    web.join("lobby", None).await;

    op.send("/kick pest spamming").await;
    let told = web.until_type("notice").await;
    assert_eq!(told["text"], "* kicked by op: spamming", "{told}");
    let (code, _) = closed(&mut web.ws).await;
    assert_eq!(code, Some(CloseCode::Policy));
    op.out_line("the kick announced", |l| {
        l.contains("pest was kicked by op: spamming")
    })
    .await;

    // A kick is not a ban: the web user comes back, and is banned, then refused.
    let mut web = Bot::logged_in(&server, None, "pest", &web_key).await;
    web.join("lobby", None).await;
    op.send("/ban pest").await;
    let told = web.until_type("notice").await;
    assert!(
        told["text"].as_str().unwrap().starts_with("* banned by op"),
        "{told}"
    );
    assert_eq!(closed(&mut web.ws).await.0, Some(CloseCode::Policy));
    let mut again = Bot::connect(&server, None).await;
    let refused = again.login("pest", &web_key).await;
    assert_eq!(
        (&refused["type"], &refused["code"]),
        (&json!("refused"), &json!("banned")),
        "{refused}"
    );
}

#[tokio::test]
async fn rooms_per_connection_are_bounded_and_a_mles_client_keeps_its_uid() {
    let server = Start::new().args(&["--ssh-rooms-per-hour", "52"]).start();
    let key = Key::new();
    let mut bot = Bot::logged_in(&server, None, "roamer", &key).await;
    bot.send(json!({"type": "send", "room": "nowhere", "text": "x", "id": 1}))
        .await;
    assert_eq!(bot.reply(1).await["code"], "not_joined");

    // 50 rooms at most; requests are paced under the 20-a-second limit.
    let max_rooms = bot.hello["limits"]["max_rooms"].as_u64().unwrap();
    assert_eq!(max_rooms, 50);
    for n in 0..=max_rooms {
        bot.send(json!({"type": "join", "room": format!("r{n}"), "id": 100 + n}))
            .await;
        let reply = bot.reply(100 + n).await;
        if n < max_rooms {
            assert_eq!(reply["type"], "joined", "{reply}");
        } else {
            assert_eq!(reply["code"], "too_many_rooms", "{reply}");
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    bot.send(json!({"type": "leave", "room": "r0", "id": 2}))
        .await;
    assert_eq!(bot.reply(2).await["type"], "ok");
    bot.send(json!({"type": "join", "room": "r-last", "id": 3}))
        .await;
    assert_eq!(bot.reply(3).await["type"], "joined");
    bot.send(json!({"type": "rooms", "id": 4})).await;
    let rooms = bot.reply(4).await;
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 50, "{rooms}");

    // New rooms, as over SSH: --ssh-rooms-per-hour of them (52 here: 51 made so far); a room
    // that exists (it has history) can always be entered again.
    for (n, room, outcome) in [
        (6, "r-52nd", "joined"),
        (7, "r-53rd", "error"),
        (8, "r0", "joined"),
    ] {
        bot.send(json!({"type": "leave", "room": format!("r{}", n - 5), "id": 10 + n}))
            .await;
        assert_eq!(bot.reply(10 + n).await["type"], "ok");
        bot.send(json!({"type": "join", "room": room, "id": n}))
            .await;
        let reply = bot.reply(n).await;
        assert_eq!(reply["type"], outcome, "{room}: {reply}");
        if outcome == "error" {
            assert_eq!(reply["code"], "rate");
            assert!(
                reply["reason"]
                    .as_str()
                    .unwrap()
                    .contains("at most 52 new rooms an hour"),
                "{reply}"
            );
        }
    }

    // A Mles client holding a free name in a room keeps it there, even once the name is bound.
    let _mles = server.client().join("squatter", "held").await;
    // The bot holds 49 rooms now (two left for a refused one), so with the squatter 50.
    server.wait_metric("kanava_members", 50.0).await;
    let mut other = Bot::logged_in(&server, None, "squatter", &Key::new()).await;
    other
        .send(json!({"type": "join", "room": "held", "id": 5}))
        .await;
    let refused = other.reply(5).await;
    assert_eq!(refused["code"], "duplicate", "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("as a Mles client")
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_while_another_is_served() {
    let server = Start::new().start();
    let room = channel("webslow");
    // A room of large messages, from a Mles client (no chat limit applies to it).
    let mut mles = server.client().join("filler", &room).await;
    let large = "y".repeat(60 * 1024);
    for _ in 0..100 {
        mles.send(text(&large)).await.unwrap();
    }
    server.wait_metric("kanava_frames_in_total", 100.0).await;

    let mut honest = Bot::logged_in(&server, Some("127.0.0.3"), "honest", &Key::new()).await;
    honest.join(&room, None).await;
    let mut stalled = Bot::logged_in(&server, Some("127.0.0.2"), "stalled", &Key::new()).await;
    // It asks for page after page of history and never reads a byte of the answers.
    let mut id = 0;
    while server
        .metric("kanava_web_refusals_total{code=\"slow_reader\"}")
        .await
        < 1.0
    {
        assert!(id < 400, "still not closed after {id} history pages unread");
        for _ in 0..10 {
            id += 1;
            let request = json!({"type": "history", "room": room, "before": 1u64 << 40, "id": id});
            if stalled
                .ws
                .send(Message::text(request.to_string()))
                .await
                .is_err()
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Closed, its queue given back; the other user is served meanwhile and after.
    honest.say(&room, "served while the other stalls", 1).await;
    wait_until_async("the stalled session is gone", || async {
        server.metric("kanava_web_sessions").await < 2.0
    })
    .await;
    wait_until_async("the stalled queue is given back", || async {
        server.metric("kanava_memory_payload_bytes").await < (1 << 20) as f64
    })
    .await;
    honest.say(&room, "and after", 2).await;
}

#[tokio::test]
async fn presence_follows_people_coming_and_going_over_every_transport() {
    let server = Start::new().start();
    let room = channel("webpresence");
    let mut bot = Bot::logged_in(&server, None, "watcher", &Key::new()).await;
    let (joined, _) = bot.join(&room, None).await;
    assert_eq!(
        joined["members"],
        json!([{"name": "watcher", "verified": true}])
    );
    // A join header is stored for later joiners, not relayed live: presence says who came.
    let mles = server.client().join("visitor", &room).await;
    let presence = bot.until_type("presence").await;
    assert_eq!(presence["room"], room.as_str());
    assert_eq!(
        presence["members"],
        json!([{"name": "visitor", "verified": false}, {"name": "watcher", "verified": true}])
    );
    drop(mles);
    let presence = bot.until_type("presence").await;
    assert_eq!(
        presence["members"],
        json!([{"name": "watcher", "verified": true}])
    );
}

#[tokio::test]
async fn a_sender_past_its_disk_share_is_refused_with_the_reason_while_another_posts() {
    let server = Start::new()
        .args(&["--max-disk-per-source", "48KiB"])
        .start();
    let room = channel("webdisk");
    let mut filler = Bot::logged_in(&server, Some("127.0.0.2"), "filler", &Key::new()).await;
    let mut honest = Bot::logged_in(&server, Some("127.0.0.3"), "poster", &Key::new()).await;
    filler.join(&room, None).await;
    honest.join(&room, None).await;
    let block = "z".repeat(4000);
    let mut refusal = None;
    for id in 1..=20 {
        filler
            .send(json!({"type": "send", "room": room, "text": block, "id": id}))
            .await;
        let reply = filler.reply(id).await;
        if reply["type"] == "error" {
            refusal = Some(reply);
            break;
        }
    }
    let refusal = refusal.expect("refused within 20 messages of 4000 bytes");
    assert_eq!(refusal["code"], "disk", "{refusal}");
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap()
            .contains("your address has used its share of the server's disk"),
        "{refusal}"
    );
    honest.say(&room, "another address still posts", 1).await;
}

#[tokio::test]
async fn a_silent_client_is_closed_after_four_pings_and_a_reading_one_stays() {
    let server = Start::new().args(&["--ping-interval", "1s"]).start();
    let mut silent = Bot::logged_in(&server, Some("127.0.0.2"), "silent", &Key::new()).await;
    let mut awake = Bot::logged_in(&server, Some("127.0.0.3"), "awake", &Key::new()).await;
    // The reading client answers every ping (tungstenite does, as browsers do) while the
    // silent one reads nothing for five intervals.
    let started = std::time::Instant::now();
    let quiet = drain_for(&mut awake.ws, Duration::from_secs(5)).await;
    assert!(quiet.is_empty(), "{quiet:?}");
    let (code, reason) = close_frame(&mut silent.ws).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Policy, "no answer to pings")
    );
    assert!(started.elapsed() >= Duration::from_secs(4));
    awake.send(json!({"type": "rooms", "id": 1})).await;
    assert_eq!(awake.reply(1).await["type"], "rooms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_users_on_two_nodes_of_a_cluster_talk_with_seqs_and_private_messages() {
    let _heavy = heavy().await;
    let nats = crate::nats::NatsCluster::start().await;
    let urls = nats.urls();
    let (a, b) = (
        crate::cluster::node(&urls, "web-a", &[]),
        crate::cluster::node(&urls, "web-b", &[]),
    );
    let room = channel("webcluster");
    let mut ann = Bot::logged_in(&a, None, "ann", &Key::new()).await;
    let mut ben = Bot::logged_in(&b, None, "ben", &Key::new()).await;
    ann.join(&room, None).await;
    ben.join(&room, None).await;

    // The sender's own event and seq come back on its node; the other node's user gets the
    // same seq.
    let (ok, own) = ann.say(&room, "across the cluster", 1).await;
    assert_eq!(own["seq"], ok["seq"], "{ok} {own}");
    let seen = ben.event_with_text("across the cluster").await;
    assert_eq!(
        (&seen["seq"], &seen["from"], &seen["verified"]),
        (&own["seq"], &json!("ann"), &json!(true))
    );
    let (_, answer) = ben.say(&room, "heard you", 2).await;
    let heard = ann.event_with_text("heard you").await;
    assert_eq!(heard["seq"], answer["seq"]);
    assert!(heard["seq"].as_u64() > own["seq"].as_u64());

    // A private message crosses nodes too.
    ben.send(json!({"type": "pm", "to": "ann", "text": "psst", "id": 3}))
        .await;
    let pm = ann.until_type("pm").await;
    assert_eq!((&pm["from"], &pm["text"]), (&json!("ben"), &json!("psst")));
}
