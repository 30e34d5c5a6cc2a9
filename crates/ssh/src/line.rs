//! The plain-text form of channel events, one line each, for exec and line mode: what bots read.
//!
//! `2026-11-21T12:00:00Z <alice> hello` for a message, `… ** alice waves` for an emote (a text
//! frame starting `/me `, as `/me waves` sends it), `… <bob> [binary, 24 bytes]` for a binary
//! frame (Mles clients' ciphertext), `… * carol joined` for a join header. A multi-line message
//! continues on lines of its own, indented under its text. Everything from a user
//! goes through [`sanitize`]. A sender that did not prove its uid is a bound name (a Mles client
//! without a proof) is shown as `~uid` ([`shown_name`]); bound names never contain `~`.

use kanava_core::{Entry, FrameKind, Uid};

use crate::chat::text;
use crate::clock::Zone;
use kanava_core::sanitize;
use unicode_width::UnicodeWidthStr;

/// The line for `entry`, its time in `zone`, or `None` for frames with nothing to show
/// (client pings). A message of several lines continues on lines of its own, indented under
/// its text ([`continued`]); there is no newline at the end.
pub fn event_line(entry: &Entry, zone: &Zone) -> Option<String> {
    let stamp = zone.stamp(entry.time_ms);
    let text = event_text(entry)?;
    let body = match entry.payload.strip_prefix(b"/me ") {
        Some(action) => action,
        None => &entry.payload,
    };
    if entry.kind == FrameKind::Text && text::has_breaks(body) {
        // The text ends with the sanitised body; what comes before it starts the first line.
        if let Some(prefix) = text.strip_suffix(sanitize(body).as_str()) {
            return Some(continued(
                &format!("{stamp} {prefix}"),
                &text::lines("", body),
            ));
        }
    }
    Some(format!("{stamp} {text}"))
}

/// `lines` (sanitised, tabs expanded) as plain lines: the first after `head` (`TIME <name> `),
/// each further one on a line of its own, indented by the width of `head` so that it stands
/// under the text. A continuation line so always starts with a space, which no event line
/// does: a reader (or a bot) tells them apart.
pub fn continued(head: &str, lines: &[String]) -> String {
    let indent = " ".repeat(UnicodeWidthStr::width(head));
    let mut out = String::from(head);
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&indent);
        }
        out.push_str(line);
    }
    out
}

/// How a uid is shown to readers: sanitised, and marked `~` unless its holder proved it is
/// their bound name, so that nobody passes for a bound name by typing it.
pub fn shown_name(uid: &Uid, verified: bool) -> String {
    let name = sanitize(uid.as_str().as_bytes());
    if verified { name } else { format!("~{name}") }
}

/// What happened, without the time: `<alice> hello`, `** alice waves`, `<~bob> [binary, 3 bytes]`
/// (an unverified Mles uid), `* carol joined`.
pub fn event_text(entry: &Entry) -> Option<String> {
    let who = shown_name(&entry.sender, entry.verified);
    Some(match entry.kind {
        FrameKind::Text => match entry.payload.strip_prefix(b"/me ") {
            Some(action) => format!("** {who} {}", sanitize(action)),
            None => format!("<{who}> {}", sanitize(&entry.payload)),
        },
        FrameKind::Binary => format!("<{who}> [binary, {} bytes]", entry.payload.len()),
        FrameKind::Header => format!("* {who} joined"),
        FrameKind::Ping => return None,
    })
}

/// RFC 3339 UTC time of a Unix millisecond timestamp, to the second.
pub fn utc_timestamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kanava_core::Uid;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_262_399_999), "2026-11-21T11:59:59Z");
    }

    #[test]
    fn lines() {
        let utc = Zone::utc();
        let entry = |kind, payload: &'static [u8]| Entry {
            seq: 1,
            kind,
            sender: Uid::new("bob\x1b").unwrap(),
            verified: false,
            payload: Bytes::from_static(payload),
            time_ms: 0,
        };
        assert_eq!(
            event_line(&entry(FrameKind::Text, b"hi\x1b[2J"), &utc).unwrap(),
            "1970-01-01T00:00:00Z <~bob^[> hi^[[2J"
        );
        assert_eq!(
            event_line(&entry(FrameKind::Binary, &[1, 2, 3]), &utc).unwrap(),
            "1970-01-01T00:00:00Z <~bob^[> [binary, 3 bytes]"
        );
        assert_eq!(
            event_line(&entry(FrameKind::Header, b"{}"), &utc).unwrap(),
            "1970-01-01T00:00:00Z * ~bob^[ joined"
        );
        assert_eq!(event_line(&entry(FrameKind::Ping, b""), &utc), None);
        assert_eq!(
            event_line(&entry(FrameKind::Text, b"/me waves\x07"), &utc).unwrap(),
            "1970-01-01T00:00:00Z ** ~bob^[ waves^G"
        );
        let verified = Entry {
            sender: Uid::new("alice").unwrap(),
            verified: true,
            ..entry(FrameKind::Text, b"hi")
        };
        assert_eq!(
            event_line(&verified, &utc).unwrap(),
            "1970-01-01T00:00:00Z <alice> hi"
        );

        // Several lines: continuation lines under the text, tabs expanded, CRLF a break, and
        // still no control character.
        let indent = " ".repeat("1970-01-01T00:00:00Z <~bob^[> ".len());
        assert_eq!(
            event_line(&entry(FrameKind::Text, b"a\r\n\tb\x1b[2J\nc"), &utc).unwrap(),
            format!("1970-01-01T00:00:00Z <~bob^[> a\n{indent}    b^[[2J\n{indent}c")
        );
        let indent = " ".repeat("1970-01-01T00:00:00Z ** ~bob^[ ".len());
        assert_eq!(
            event_line(&entry(FrameKind::Text, b"/me waves\nagain"), &utc).unwrap(),
            format!("1970-01-01T00:00:00Z ** ~bob^[ waves\n{indent}again")
        );
    }
}
