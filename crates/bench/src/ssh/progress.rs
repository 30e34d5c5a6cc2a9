//! The progress bar drawn on stderr while a run is under way (hidden with `--json`).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// The run's progress bar.
pub(crate) struct Progress(ProgressBar);

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

    /// Shows how many sessions have been set up.
    pub(crate) fn connecting(&self, done: usize, failed: usize, total: usize) {
        self.0.set_length(total.try_into().unwrap_or(u64::MAX));
        self.0.set_position(done.try_into().unwrap_or(u64::MAX));
        self.0.set_message(format!(
            "sessions in the chat: {}/{total} ({failed} failed)",
            done - failed
        ));
    }

    /// Shows how far sending has come.
    pub(crate) fn sending(&self, elapsed: Duration, duration: Duration, sent: usize, seen: u64) {
        self.0
            .set_length(duration.as_millis().try_into().unwrap_or(u64::MAX));
        self.0.set_position(
            elapsed
                .min(duration)
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
        );
        self.0.set_message(format!(
            "{:.1}s/{:.1}s  sent {sent}  screen updates {seen}",
            elapsed.as_secs_f64(),
            duration.as_secs_f64()
        ));
    }

    /// Shows the messages still making their way to every screen after sending stopped.
    pub(crate) fn settling(&self, sent: usize, complete: usize) {
        self.0.set_message(format!(
            "settling: {complete}/{sent} messages on every screen"
        ));
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        self.0.finish_and_clear();
    }
}
