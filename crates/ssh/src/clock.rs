//! Times as a user reads them: in their time zone (UTC unless they set one with `/tz`, or their
//! client sent `TZ`), with the date when it is not today. The zone is looked up by its IANA
//! name in the system's time zone database (`/usr/share/zoneinfo`), or in the copy built into
//! the binary where the system has none.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::line::utc_timestamp;

/// Longest zone name accepted: the longest IANA names are about 30 characters.
pub const MAX_ZONE_NAME: usize = 64;

/// Why a zone name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    /// Not the shape of an IANA name (`Area/Location`, letters, digits, `/_+-`).
    #[error("not a time zone name (an IANA name such as Europe/Helsinki)")]
    Malformed,
    /// Well formed, but not in the time zone database.
    #[error("unknown time zone (an IANA name such as Europe/Helsinki)")]
    Unknown,
}

/// A user's time zone and the name they gave it by.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Default for Zone {
    fn default() -> Self {
        Self::utc()
    }
}

impl Zone {
    /// Coordinated Universal Time, the zone of a user who set none.
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".to_owned(),
            tz: TimeZone::UTC,
        }
    }

    /// The zone called `name` (an IANA name; a leading `:` as POSIX `TZ` allows is dropped).
    /// The name is checked before the database is asked, so that no path or oversized text
    /// reaches it.
    pub fn named(name: &str) -> Result<Zone, ZoneError> {
        let name = name.strip_prefix(':').unwrap_or(name);
        let well_formed = !name.is_empty()
            && name.len() <= MAX_ZONE_NAME
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && !name.contains("..")
            && !name.contains("//")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
        if !well_formed {
            return Err(ZoneError::Malformed);
        }
        if name.eq_ignore_ascii_case("UTC") {
            return Ok(Zone::utc());
        }
        let tz = TimeZone::get(name).map_err(|_| ZoneError::Unknown)?;
        let name = tz.iana_name().unwrap_or(name).to_owned();
        Ok(Zone { name, tz })
    }

    /// The zone's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is UTC.
    pub fn is_utc(&self) -> bool {
        self.name == "UTC"
    }

    /// `Europe/Helsinki (UTC+02:00 now)`: the name and the offset in force at `now_ms`.
    pub fn describe(&self, now_ms: u64) -> String {
        match self.zoned(now_ms) {
            Some(now) if !self.is_utc() => {
                format!("{} ({} now)", self.name, now.strftime("UTC%:z"))
            }
            _ => self.name.clone(),
        }
    }

    /// RFC 3339 time of a Unix millisecond time, to the second: `…Z` in UTC, with the offset
    /// (`2026-12-07T00:03:00+02:00`) in any other zone. For bots and `tail`.
    pub fn stamp(&self, time_ms: u64) -> String {
        match self.zoned(time_ms) {
            Some(time) if !self.is_utc() => time.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            _ => utc_timestamp(time_ms),
        }
    }

    /// The time before a line of the full-screen chat: `14:03` for today (in this zone, at
    /// `now_ms`), `Dec 04 14:03` for another day this year, `2025-12-04 14:03` before that.
    pub fn pane_time(&self, time_ms: u64, now_ms: u64) -> String {
        let (Some(time), Some(now)) = (self.zoned(time_ms), self.zoned(now_ms)) else {
            return utc_timestamp(time_ms)[11..16].to_owned();
        };
        let format = if time.date() == now.date() {
            "%H:%M"
        } else if time.year() == now.year() {
            "%b %d %H:%M"
        } else {
            "%Y-%m-%d %H:%M"
        };
        time.strftime(format).to_string()
    }

    fn zoned(&self, time_ms: u64) -> Option<jiff::Zoned> {
        let ms = i64::try_from(time_ms).ok()?;
        Some(
            Timestamp::from_millisecond(ms)
                .ok()?
                .to_zoned(self.tz.clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-06T22:30:00Z.
    const NOW: u64 = 1_796_596_200_000;
    const HOUR: u64 = 3_600_000;

    #[test]
    fn today_is_a_time_and_another_day_has_its_date() {
        let utc = Zone::utc();
        assert_eq!(utc.pane_time(NOW, NOW), "22:30");
        assert_eq!(utc.pane_time(NOW - 22 * HOUR, NOW), "00:30");
        assert_eq!(utc.pane_time(NOW - 23 * HOUR, NOW), "Dec 05 23:30");
        assert_eq!(utc.pane_time(NOW - 40 * 24 * HOUR, NOW), "Oct 27 22:30");
        assert_eq!(
            utc.pane_time(NOW - 365 * 24 * HOUR, NOW),
            "2025-12-06 22:30"
        );
        // In Helsinki (UTC+2 in winter) it is already the 7th: 22:30 UTC yesterday is today.
        let helsinki = Zone::named("Europe/Helsinki").unwrap();
        assert_eq!(helsinki.pane_time(NOW, NOW), "00:30");
        assert_eq!(helsinki.pane_time(NOW - HOUR, NOW), "Dec 06 23:30");
        // Summer time: UTC+3 in July.
        let july = NOW - 150 * 24 * HOUR;
        assert_eq!(helsinki.pane_time(july, NOW), "Jul 10 01:30");
        let kathmandu = Zone::named("Asia/Kathmandu").unwrap();
        assert_eq!(kathmandu.pane_time(NOW, NOW), "04:15");
    }

    #[test]
    fn stamps_carry_the_offset_outside_utc() {
        assert_eq!(Zone::utc().stamp(NOW), "2026-12-06T22:30:00Z");
        let kolkata = Zone::named("Asia/Kolkata").unwrap();
        assert_eq!(kolkata.stamp(NOW), "2026-12-07T04:00:00+05:30");
        assert_eq!(kolkata.describe(NOW), "Asia/Kolkata (UTC+05:30 now)");
        assert_eq!(Zone::utc().describe(NOW), "UTC");
        assert_eq!(Zone::utc().stamp(u64::MAX), utc_timestamp(u64::MAX));
    }

    #[test]
    fn names_are_checked_before_the_database_is_asked() {
        assert_eq!(
            Zone::named(":Europe/Helsinki").unwrap().name(),
            "Europe/Helsinki"
        );
        assert!(Zone::named("utc").unwrap().is_utc());
        for bad in [
            "",
            "/etc/passwd",
            "../../etc/passwd",
            "Europe/../../x",
            "Europe//Helsinki",
            "Europe/Hel sinki",
            "Europe/Helsinki\u{1b}[2J",
            &"A".repeat(MAX_ZONE_NAME + 1),
        ] {
            assert_eq!(
                Zone::named(bad).unwrap_err(),
                ZoneError::Malformed,
                "{bad:?}"
            );
        }
        assert_eq!(Zone::named("Mars/Olympus").unwrap_err(), ZoneError::Unknown);
    }
}
