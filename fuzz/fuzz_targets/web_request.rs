//! Fuzzes what the browser chat reads off the network: the kanava web protocol's request
//! decoder (`kanava_web::protocol::decode`, fed the text frames a client sends), the login's key
//! and SSHSIG parsing (`kanava_web::proof`), and the plain GET that asks for a page
//! (`upgrade::parse_page_request`, then the embedded front end's response).
//!
//! The first byte picks the decoder; the rest is its input.
//!
//! Invariants checked beyond "no panic":
//! - a decoded request's id is at most 2^53-1, and its room names parse or are refused;
//! - a refused frame's reason is one line of at most `MAX_REASON` bytes;
//! - a key or signature that does not parse is refused, never accepted, and a random signature
//!   never verifies;
//! - every page response is a complete HTTP/1.1 response (200, 304 or 404) carrying the
//!   Content-Security-Policy, and a HEAD response has no body.

#![no_main]

use kanava_mles::Pages;
use kanava_mles::upgrade::parse_page_request;
use kanava_web::protocol::{self, MAX_ID, MAX_REASON, Request};
use kanava_web::{CONTENT_SECURITY_POLICY, FrontEnd, proof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => request(input),
        1 => login(input),
        _ => page(input),
    }
});

fn request(input: &[u8]) {
    // Text frames are valid UTF-8 (tungstenite closes on anything else).
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    match protocol::decode(text) {
        Ok(envelope) => {
            assert!(envelope.id.is_none_or(|id| id <= MAX_ID));
            match envelope.request {
                Request::Join { room, .. }
                | Request::Leave { room }
                | Request::Send { room, .. }
                | Request::History { room, .. }
                | Request::Topic { room, .. } => {
                    let _ = protocol::room(&room);
                }
                _ => {}
            }
        }
        Err(bad) => {
            assert!(bad.reason.len() <= MAX_REASON, "reason of {} bytes", bad.reason.len());
            assert!(!bad.reason.contains('\n'), "{:?}", bad.reason);
            assert!(bad.id.is_none_or(|id| id <= MAX_ID));
        }
    }
}

fn login(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let mut parts = text.splitn(4, '\0');
    let (key, signature, name, nonce) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if let Ok(identity) = proof::identity_key(key, 0) {
        assert!(identity.fingerprint.starts_with("SHA256:"));
        assert!(!identity.pending);
    }
    // No input here is a signature by a key's private half over the name and nonce.
    assert!(proof::verify(key, signature, name, nonce).is_err());
}

fn page(input: &[u8]) {
    let Some(request) = parse_page_request(input) else {
        return;
    };
    let response = FrontEnd.respond(&request);
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = std::str::from_utf8(&response[..end]).expect("an ASCII head");
    assert!(
        ["HTTP/1.1 200 ", "HTTP/1.1 304 ", "HTTP/1.1 404 "]
            .iter()
            .any(|status| head.starts_with(status)),
        "{head}"
    );
    assert!(head.contains(&format!("\r\nContent-Security-Policy: {CONTENT_SECURITY_POLICY}\r\n")));
    if request.head || head.starts_with("HTTP/1.1 304 ") {
        assert_eq!(end + 4, response.len(), "a body after {head}");
    }
}
