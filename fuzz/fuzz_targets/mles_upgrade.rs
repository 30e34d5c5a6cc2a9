//! Fuzzes the HTTP/1.1 upgrade request parser of the Mles listener: `upgrade::parse_request`,
//! fed the raw bytes read from a TLS connection.
//!
//! Invariants checked beyond "no panic":
//! - `Partial` (keep reading) only while fewer than `MAX_REQUEST_HEAD` bytes are buffered, so a
//!   client cannot make the server buffer without bound;
//! - on `Complete { head_len, .. }`, `head_len` is within the input and within
//!   `MAX_REQUEST_HEAD`, the key is non-empty, the result depends only on the head (bytes after
//!   it already belong to the WebSocket), and the 101 response can be built;
//! - every refusal's response is an HTTP/1.1 4xx.

#![no_main]

use kanava_mles::upgrade::{MAX_REQUEST_HEAD, Parsed, SUBPROTOCOL, accept_response, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(Parsed::Partial) => {
            assert!(
                data.len() < MAX_REQUEST_HEAD,
                "still Partial after {} bytes",
                data.len()
            );
        }
        Ok(Parsed::Complete { request, head_len }) => {
            assert!(
                head_len <= data.len(),
                "head_len {head_len} > input {}",
                data.len()
            );
            assert!(
                head_len <= MAX_REQUEST_HEAD,
                "head_len {head_len} > MAX_REQUEST_HEAD"
            );
            assert!(!request.key.is_empty(), "accepted an empty Sec-WebSocket-Key");
            assert_eq!(
                parse_request(&data[..head_len]),
                Ok(Parsed::Complete {
                    request: request.clone(),
                    head_len
                }),
                "the bytes after the head changed the result"
            );
            let response = accept_response(&request, Some(SUBPROTOCOL));
            assert!(
                response.starts_with(b"HTTP/1.1 101 "),
                "{:?}",
                String::from_utf8_lossy(&response)
            );
        }
        Err(refusal) => {
            let response = refusal.response();
            assert!(
                response.starts_with(b"HTTP/1.1 4"),
                "{refusal:?} answers {:?}",
                String::from_utf8_lossy(&response)
            );
        }
    }
});
