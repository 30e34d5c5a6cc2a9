//! Answering a connection refused at accept time (a connection cap was full) so that the user
//! sees why: the SSH identification line, then an unencrypted `SSH_MSG_DISCONNECT` (RFC 4253
//! §11.1, reason `SSH_DISCONNECT_TOO_MANY_CONNECTIONS`), which OpenSSH prints as
//! `Received disconnect from HOST port PORT:12: REASON`. Lines before the identification
//! (RFC 4253 §4.2) would be shown by OpenSSH only at debug level.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The identification line the refusal starts with.
const IDENTIFICATION: &[u8] = b"SSH-2.0-kanava\r\n";

/// `SSH_MSG_DISCONNECT`.
const MSG_DISCONNECT: u8 = 1;

/// `SSH_DISCONNECT_TOO_MANY_CONNECTIONS` (RFC 4250 §4.2.2).
const TOO_MANY_CONNECTIONS: u32 = 12;

/// How long a refused client may take to read the refusal before it is dropped.
pub(crate) const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// Refused connections being answered at once; past this, a refused connection is closed
/// without a word, so that answering refusals never holds many descriptors.
pub(crate) const REFUSALS_AT_ONCE: usize = 64;

/// The bytes a refused client is sent: identification, then a disconnect packet with `reason`.
pub(crate) fn refusal(reason: &str) -> Vec<u8> {
    let mut payload = vec![MSG_DISCONNECT];
    payload.extend_from_slice(&TOO_MANY_CONNECTIONS.to_be_bytes());
    for text in [reason.as_bytes(), b"en".as_slice()] {
        payload.extend_from_slice(&(text.len() as u32).to_be_bytes());
        payload.extend_from_slice(text);
    }
    // Without a cipher, the packet (length field included) is a multiple of 8 bytes, with at
    // least 4 bytes of padding.
    let unpadded = 4 + 1 + payload.len();
    let padding = 4 + (8 - (unpadded + 4) % 8) % 8;
    let mut out = IDENTIFICATION.to_vec();
    out.extend_from_slice(&((1 + payload.len() + padding) as u32).to_be_bytes());
    out.push(padding as u8);
    out.extend_from_slice(&payload);
    out.extend(std::iter::repeat_n(0, padding));
    out
}

/// Sends the refusal, then reads (and discards) what the client sends until it closes, within
/// [`REFUSAL_TIME`]: closing with unread input would reset the connection, and the client
/// might lose the refusal with it.
pub(crate) async fn refuse(mut tcp: TcpStream, reason: &str) {
    let answered = tokio::time::timeout(REFUSAL_TIME, async {
        tcp.write_all(&refusal(reason)).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 2048];
        while tcp.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    });
    let _ = answered.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disconnect_packet_is_well_formed() {
        let bytes = refusal("too many connections from your address");
        let packet = bytes.strip_prefix(IDENTIFICATION).unwrap();
        let length = u32::from_be_bytes(packet[..4].try_into().unwrap()) as usize;
        assert_eq!(packet.len(), 4 + length);
        assert_eq!(packet.len() % 8, 0);
        let padding = usize::from(packet[4]);
        assert!((4..=11).contains(&padding));
        let payload = &packet[5..packet.len() - padding];
        assert_eq!(payload[0], MSG_DISCONNECT);
        assert_eq!(payload[1..5], TOO_MANY_CONNECTIONS.to_be_bytes());
        let text_len = u32::from_be_bytes(payload[5..9].try_into().unwrap()) as usize;
        assert_eq!(
            &payload[9..9 + text_len],
            b"too many connections from your address"
        );
        assert_eq!(&payload[9 + text_len..], b"\0\0\0\x02en");
    }

    #[test]
    fn every_reason_length_pads_to_a_block() {
        for len in 0..40 {
            let bytes = refusal(&"x".repeat(len));
            let packet = &bytes[IDENTIFICATION.len()..];
            assert_eq!(packet.len() % 8, 0, "{len}");
            assert!(packet[4] >= 4, "{len}");
        }
    }
}
