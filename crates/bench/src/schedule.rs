//! When each frame of a fixed-rate sender is due, so that it keeps its average rate however
//! late one wake-up was.

use std::time::Duration;

/// Frames due `elapsed` into sending at `rate` per second: one at the start and one each
/// period after.
pub(crate) fn due_by(elapsed: Duration, rate: f64) -> u64 {
    (elapsed.as_secs_f64() * rate) as u64 + 1
}

/// When frame `seq` is due, from the start of sending.
pub(crate) fn due_at(seq: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(seq as f64 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_keeps_the_average_rate() {
        let rate = 100.0;
        assert_eq!(due_by(Duration::ZERO, rate), 1);
        assert_eq!(due_by(Duration::from_millis(9), rate), 1);
        assert_eq!(due_by(Duration::from_millis(10), rate), 2);
        assert_eq!(due_by(Duration::from_secs(1), rate), 101);
        assert_eq!(due_at(250, rate), Duration::from_millis(2500));
    }
}
