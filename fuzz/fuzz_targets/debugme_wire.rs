//! Fuzzes what the debug-me server reads off the network: the HTTP request head
//! (`kanava_debugme_server::handshake::classify`) and the WebSocket frame decoder
//! (`V`/`M`/`R`/`L`/`D`/`E`, with the protobuf of `L` frames): `kanava_debugme::frame::decode_frame`,
//! fed one binary WebSocket message.
//!
//! The head classifier must wait for more only below its size limit, and an upgrade's head
//! length must lie within the bytes read.
//!
//! Beyond "no panic", a frame that decodes must come from at most `MAX_FRAME_BYTES` bytes, and
//! must re-encode with `encode_frame` to bytes that decode to the same frame and re-encode
//! identically (the encoder's output is a fixed point).

#![no_main]

use kanava_debugme::frame::{MAX_FRAME_BYTES, decode_frame, encode_frame};
use kanava_debugme_server::handshake::{Head, MAX_HEAD, classify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match classify(data) {
        None => assert!(data.len() < MAX_HEAD, "waits for more past the limit"),
        Some(Head::Upgrade(_, head_len)) => assert!(head_len <= data.len()),
        Some(Head::Plain | Head::Invalid) => {}
    }
    let Ok(frame) = decode_frame(data) else {
        return;
    };
    assert!(
        data.len() <= MAX_FRAME_BYTES,
        "accepted a {}-byte frame",
        data.len()
    );
    let encoded = encode_frame(&frame);
    let again = decode_frame(&encoded)
        .unwrap_or_else(|e| panic!("re-encoded frame does not decode ({e}): {encoded:02x?}"));
    assert_eq!(again, frame, "re-encoded frame decodes differently");
    assert_eq!(
        encode_frame(&again),
        encoded,
        "encoding is not a fixed point"
    );
});
