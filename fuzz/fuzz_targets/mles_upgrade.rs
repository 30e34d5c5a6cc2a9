//! Fuzzes the HTTP/1.1 upgrade request parser of the Mles listener: `upgrade::parse_request`,
//! fed the raw bytes read from a TLS connection.
//!
//! Invariants checked beyond "no panic":
//! - `Partial` (keep reading) only while fewer than `MAX_REQUEST_HEAD` bytes are buffered, so a
//!   client cannot make the server buffer without bound;
//! - on `Complete { head_len, .. }`, `head_len` is within the input and within
//!   `MAX_REQUEST_HEAD`, the key is the base64 of exactly 16 bytes (22 alphabet characters and
//!   `==`), the result depends only on the head (bytes after it already belong to the
//!   WebSocket), and the 101 response can be built;
//! - every refusal's response is an HTTP/1.1 4xx whose body is the refusal's reason.

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
            let key = request.key.as_bytes();
            assert!(
                key.len() == 24
                    && key.ends_with(b"==")
                    && key[..22]
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/'),
                "accepted Sec-WebSocket-Key {:?}",
                request.key
            );
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
                response.starts_with(b"HTTP/1.1 4")
                    && response.ends_with(format!("\r\n\r\n{refusal}\n").as_bytes()),
                "{refusal:?} answers {:?}",
                String::from_utf8_lossy(&response)
            );
        }
    }
});
