//! The progress bar drawn on stderr while a run is under way (hidden with `--json`), shared by
//! the load generators: each says what it is doing in its own words.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// The run's progress bar.
pub(crate) struct Progress(ProgressBar);

fn to_u64(n: impl TryInto<u64>) -> u64 {
    n.try_into().unwrap_or(u64::MAX)
}

impl Progress {
    /// A bar drawn on stderr if `visible`, otherwise one that draws nothing.
    pub(crate) fn new(visible: bool) -> Self {
        let bar = if visible {
            ProgressBar::new(1)
        } else {
            ProgressBar::hidden()
        };
        let style = ProgressStyle::with_template("{spinner} [{bar:30}] {msg}")
            .expect("the template is valid")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(bar)
    }

    /// `done` of `total` steps, and what they are.
    pub(crate) fn steps(&self, done: usize, total: usize, message: String) {
        self.0.set_length(to_u64(total));
        self.0.set_position(to_u64(done));
        self.0.set_message(message);
    }

    /// `elapsed` of a phase lasting `duration`, and what is happening in it.
    pub(crate) fn timed(&self, elapsed: Duration, duration: Duration, message: &str) {
        self.0.set_length(to_u64(duration.as_millis()));
        self.0
            .set_position(to_u64(elapsed.min(duration).as_millis()));
        self.0.set_message(format!(
            "{:.1}s/{:.1}s  {message}",
            elapsed.as_secs_f64(),
            duration.as_secs_f64()
        ));
    }

    /// What is happening, without a measure of how far along.
    pub(crate) fn say(&self, message: String) {
        self.0.set_message(message);
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        self.0.finish_and_clear();
    }
}
