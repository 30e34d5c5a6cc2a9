//! How byte sizes are written on kanava's command lines and in its config file, one rule for
//! every limit: a bare number of bytes, or a number with a unit (`KiB`, `MiB`, `GiB`, `TiB`, or
//! the decimal `kB`, `MB`, `GB`, `TB`; `K`, `M`, `G` and `T` alone are binary), such as `64MiB`
//! or `1.5 GiB`.

/// A size that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a size such as 4096, 64KiB, 20MiB or 1.5GiB")]
pub struct SizeError(String);

/// Parses a size in bytes: a (possibly fractional) number with an optional unit.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let bad = || SizeError(text.to_owned());
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "K" | "KiB" | "k" => 1024.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = (value * multiplier).round();
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_fractions_and_refusals() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("20MiB"), Ok(20 << 20));
        assert_eq!(parse_size("20 MiB"), Ok(20 << 20));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        for bad in ["", "MiB", "ten", "10 parsecs", "-1", "1e400", "1.2.3"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
