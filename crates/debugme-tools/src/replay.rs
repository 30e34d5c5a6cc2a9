//! `kanava replay`: plays back the user's terminal output of a session log, with the session's
//! own pauses, as `debug-me --replay` does.
//!
//! The schedule is a pure function of the log: each User Seen's data, preceded by its
//! `elapsedTime` (seconds since the user's previous activity). As in debug-me, only pauses of
//! [`MIN_PAUSE`] seconds or more *in the recording* are kept: shorter gaps are the rhythm of
//! output arriving in chunks, and replaying them would only slow things down. The kept pauses
//! are divided by the speed, so a faster replay shows the same pauses, shorter.
//!
//! The bytes are what the user's terminal received, and replaying them to a terminal is the
//! point, so escape sequences stay; only the string sequences that could change or query the
//! viewer's own terminal are dropped ([`StringSequenceFilter`]). When stdin is a terminal it is put in raw mode (restored
//! on every way out) so that Space skips the current pause and Ctrl-C stops.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::log::{Line, seconds, user_seen};
use crate::terminal::StringSequenceFilter;

/// Pauses shorter than this, in seconds of the recording, are not waited for.
pub const MIN_PAUSE: f64 = 1.0;

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The speed is not a positive number.
    #[error("the speed must be a positive number, not {0}")]
    Speed(f64),
    /// Writing the output or handling the terminal failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All the output was played.
    Finished,
    /// The viewer stopped it (Ctrl-C).
    Interrupted,
}

/// How one pause ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// It ran its course.
    Elapsed,
    /// The viewer skipped the rest of it (Space).
    Skipped,
    /// The viewer asked to stop (Ctrl-C).
    Quit,
}

/// Waits out pauses: with the keyboard, or simply sleeping.
pub trait Pauser {
    /// Waits for `delay`, or less if the viewer says so.
    fn pause(&mut self, delay: Duration) -> std::io::Result<Pause>;
}

/// The replay schedule of a log: each piece of the user's output (string sequences dropped)
/// with the pause before it ([`Duration::ZERO`] for none), at `speed` times the original pace.
pub fn schedule(lines: &[Line], speed: f64) -> Result<Vec<(Duration, Vec<u8>)>, ReplayError> {
    if !(speed.is_finite() && speed > 0.0) {
        return Err(ReplayError::Speed(speed));
    }
    let mut filter = StringSequenceFilter::default();
    Ok(user_seen(lines)
        .map(|(elapsed, data)| {
            let elapsed = seconds(elapsed);
            let delay = if elapsed >= MIN_PAUSE {
                Duration::try_from_secs_f64(elapsed / speed).unwrap_or(Duration::MAX)
            } else {
                Duration::ZERO
            };
            (delay, filter.filter(data))
        })
        .collect())
}

/// Plays `schedule` to `out`, flushing before each pause.
pub fn play(
    schedule: &[(Duration, Vec<u8>)],
    out: &mut dyn Write,
    pauser: &mut dyn Pauser,
) -> Result<Outcome, ReplayError> {
    for (delay, bytes) in schedule {
        if !delay.is_zero() {
            out.flush()?;
            if pauser.pause(*delay)? == Pause::Quit {
                return Ok(Outcome::Interrupted);
            }
        }
        out.write_all(bytes)?;
    }
    out.flush()?;
    Ok(Outcome::Finished)
}

/// Plays `schedule` to stdout; with the keyboard when stdin is a terminal, else just sleeping.
pub fn play_to_stdout(schedule: &[(Duration, Vec<u8>)]) -> Result<Outcome, ReplayError> {
    let mut out = std::io::stdout().lock();
    if std::io::stdin().is_terminal() {
        let mut keyboard = Keyboard::new()?;
        play(schedule, &mut out, &mut keyboard)
    } else {
        play(schedule, &mut out, &mut Sleep)
    }
}

/// Pauses by sleeping, for when there is no terminal to read keys from.
pub struct Sleep;

impl Pauser for Sleep {
    fn pause(&mut self, delay: Duration) -> std::io::Result<Pause> {
        std::thread::sleep(delay);
        Ok(Pause::Elapsed)
    }
}

/// Pauses while reading keys from the terminal, which it keeps in raw mode while it lives.
pub struct Keyboard(());

impl Keyboard {
    /// Puts the terminal in raw mode; it is restored when this is dropped (on every way out,
    /// errors and panics included).
    pub fn new() -> std::io::Result<Keyboard> {
        crossterm::terminal::enable_raw_mode()?;
        Ok(Keyboard(()))
    }
}

impl Drop for Keyboard {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

impl Pauser for Keyboard {
    fn pause(&mut self, delay: Duration) -> std::io::Result<Pause> {
        let deadline = Instant::now().checked_add(delay);
        loop {
            let remaining = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if remaining.is_zero() || !event::poll(remaining)? {
                return Ok(Pause::Elapsed);
            }
            let Event::Key(key) = event::read()? else {
                continue;
            };
            if key.kind == KeyEventKind::Release {
                continue;
            }
            match key.code {
                KeyCode::Char(' ') => return Ok(Pause::Skipped),
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                    return Ok(Pause::Quit);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::parse;
    use crate::testlog;

    fn delays(log: &str, speed: f64) -> Vec<f64> {
        let lines = parse(log.as_bytes()).unwrap();
        schedule(&lines, speed)
            .unwrap()
            .iter()
            .map(|(d, _)| d.as_secs_f64())
            .collect()
    }

    #[test]
    fn pauses_of_a_second_or_more_are_kept_and_scaled() {
        let log = testlog::session(true);
        assert_eq!(delays(&log, 1.0), [0.0, 1.5, 0.0, 0.0, 1.0, 0.0, 2.5]);
        assert_eq!(delays(&log, 2.0), [0.0, 0.75, 0.0, 0.0, 0.5, 0.0, 1.25]);
        assert_eq!(delays(&log, 0.5), [0.0, 3.0, 0.0, 0.0, 2.0, 0.0, 5.0]);
        assert_eq!(delays(&testlog::session(false), 1.0), delays(&log, 1.0));
        let real = include_str!("../../debugme/testdata/appendix-a.log");
        assert_eq!(delays(real, 1.0), [0.0, 0.0]);
    }

    #[test]
    fn the_schedule_holds_the_user_output_in_order() {
        let log = testlog::session(false);
        let lines = parse(log.as_bytes()).unwrap();
        let bytes: Vec<u8> = schedule(&lines, 1.0)
            .unwrap()
            .iter()
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        assert_eq!(bytes, testlog::OUTPUT);
    }

    #[test]
    fn bad_speeds_are_refused_and_huge_pauses_saturate() {
        let lines = parse(testlog::session(true).as_bytes()).unwrap();
        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                schedule(&lines, speed),
                Err(ReplayError::Speed(_))
            ));
        }
        let slowest = schedule(&lines, f64::MIN_POSITIVE).unwrap();
        assert_eq!(slowest[1].0, Duration::MAX);
    }

    /// Records the pauses asked for and answers from a script.
    struct Scripted(Vec<Pause>, Vec<Duration>);

    impl Pauser for Scripted {
        fn pause(&mut self, delay: Duration) -> std::io::Result<Pause> {
            self.1.push(delay);
            Ok(self.0.remove(0))
        }
    }

    #[test]
    fn play_writes_everything_or_stops_when_asked() {
        let lines = parse(testlog::session(true).as_bytes()).unwrap();
        let plan = schedule(&lines, 1.0).unwrap();

        let mut out = Vec::new();
        let mut pauser = Scripted(
            vec![Pause::Elapsed, Pause::Skipped, Pause::Elapsed],
            Vec::new(),
        );
        assert_eq!(
            play(&plan, &mut out, &mut pauser).unwrap(),
            Outcome::Finished
        );
        assert_eq!(out, testlog::OUTPUT);
        assert_eq!(pauser.1, [1.5, 1.0, 2.5].map(Duration::from_secs_f64));

        let mut out = Vec::new();
        let mut pauser = Scripted(vec![Pause::Elapsed, Pause::Quit], Vec::new());
        assert_eq!(
            play(&plan, &mut out, &mut pauser).unwrap(),
            Outcome::Interrupted
        );
        assert_eq!(out, b"** debug-me session started\r\n$ ls\r\ncaf\xc3");
    }

    #[test]
    fn sleeping_pauses_run_their_course() {
        let start = Instant::now();
        assert_eq!(
            Sleep.pause(Duration::from_millis(20)).unwrap(),
            Pause::Elapsed
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}
