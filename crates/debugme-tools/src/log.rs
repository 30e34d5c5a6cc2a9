//! Reading a session log for the tools that draw, replay or convert it: every line parsed, with
//! its 1-based line number, and an error naming the line that is not a log line. Unlike
//! verification, nothing is checked beyond the format.

use std::path::{Path, PathBuf};

use kanava_debugme::json::{JsonError, decode_line};
use kanava_debugme::model::{AnyMessage, LogLine, Message};

/// A log that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A line is not valid UTF-8, so it cannot be JSON.
    #[error("line {line}: failed to parse a line of the log: invalid UTF-8")]
    Utf8 {
        /// The line.
        line: usize,
    },
    /// A line is not a log line.
    #[error("line {line}: failed to parse a line of the log: {error}")]
    Parse {
        /// The line.
        line: usize,
        /// What is wrong with it.
        error: JsonError,
    },
}

/// One parsed line of a log.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Its 1-based line number in the file.
    pub number: usize,
    /// What it holds.
    pub line: LogLine,
}

/// Parses the bytes of a log, skipping empty lines as debug-me does.
pub fn parse(bytes: &[u8]) -> Result<Vec<Line>, LogError> {
    let mut lines = Vec::new();
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let number = index + 1;
        let text = std::str::from_utf8(raw).map_err(|_| LogError::Utf8 { line: number })?;
        if text.trim().is_empty() {
            continue;
        }
        let line = decode_line(text).map_err(|error| LogError::Parse {
            line: number,
            error,
        })?;
        lines.push(Line { number, line });
    }
    Ok(lines)
}

/// Reads and parses the log at `path`.
pub fn read(path: &Path) -> Result<Vec<Line>, LogError> {
    let bytes = std::fs::read(path).map_err(|error| LogError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(&bytes)
}

/// The user's terminal output: each User Seen's data with its `elapsedTime` (seconds since the
/// user's previous activity), in the order of the file.
pub fn user_seen(lines: &[Line]) -> impl Iterator<Item = (f64, &[u8])> {
    lines.iter().filter_map(|line| match &line.line.message {
        AnyMessage::User(Message::Activity(activity)) => Some((
            activity.elapsed_time,
            activity.activity.seen_data.as_slice(),
        )),
        _ => None,
    })
}

/// An elapsed time as a usable number of seconds: negative, NaN and infinite times (which a
/// well-behaved writer never produces) count as no time at all.
pub fn seconds(elapsed: f64) -> f64 {
    if elapsed.is_finite() && elapsed > 0.0 {
        elapsed
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line_and_empty_lines_are_skipped() {
        let good = include_str!("../../debugme/testdata/appendix-a.log");
        let lines = parse(good.as_bytes()).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(user_seen(&lines).count(), 2);

        let text = format!(
            "{}\n\n{{\"loggedMessage\":1}}\n",
            good.lines().next().unwrap()
        );
        let error = parse(text.as_bytes()).unwrap_err();
        assert!(matches!(error, LogError::Parse { line: 3, .. }), "{error}");
        assert!(error.to_string().starts_with("line 3: "), "{error}");

        let error = parse(b"\n\xff\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 2: failed to parse a line of the log: invalid UTF-8"
        );

        let error = read(Path::new("/nonexistent/log")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot read /nonexistent/log: "),
            "{error}"
        );
    }

    #[test]
    fn odd_elapsed_times_count_as_none() {
        assert_eq!(seconds(1.5), 1.5);
        for odd in [-1.0, f64::NAN, f64::INFINITY, -0.0] {
            assert_eq!(seconds(odd), 0.0);
        }
    }
}
