//! How durations are written on kanava's command lines and in its config file, one rule for
//! every subcommand: `500ms`, `10s`, `1.5s`, `5m`, `12h`, `30d`, or a bare number of seconds.

use std::time::Duration;

/// A duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration such as 10s, 500ms, 1.5s, 5m, 12h or 30d")]
pub struct DurationError(String);

/// Parses a duration written as a (possibly fractional) number with an optional unit
/// (`ms`, `s`, `m`, `h`, `d`; seconds when none).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let (number, unit_secs) = [
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
        ("d", 86_400.0),
    ]
    .into_iter()
    .find_map(|(suffix, secs)| text.strip_suffix(suffix).map(|n| (n, secs)))
    .unwrap_or((text, 1.0));
    let bad = || DurationError(text.to_owned());
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(value * unit_secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_fractions_and_refusals() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("24s"), Ok(Duration::from_secs(24)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        for bad in ["", "s", "ten", "10x", "-1s", "NaN", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            parse_duration("ten")
                .unwrap_err()
                .to_string()
                .contains("not a duration")
        );
    }
}
