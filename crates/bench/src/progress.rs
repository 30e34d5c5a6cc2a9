//! The progress bar drawn on stderr while a run is under way (hidden with `--json`), shared by
//! the load generators: each says what it is doing in its own words.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};

/// How often a waiting load generator refreshes the bar.
pub(crate) const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

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

/// Waits until each of `total` connections (`what`) has opened or failed, counting why the
/// failures failed into `errors`.
pub(crate) async fn await_connections<E: Display>(
    mut ready: mpsc::UnboundedReceiver<Result<(), E>>,
    what: &str,
    total: usize,
    progress: &Progress,
    errors: &mut BTreeMap<String, u64>,
) {
    let (mut done, mut failed) = (0, 0);
    let show = |done, failed| {
        progress.steps(
            done,
            total,
            format!("connecting {what}: {done}/{total} ({failed} failed)"),
        );
    };
    show(done, failed);
    while let Some(result) = ready.recv().await {
        done += 1;
        if let Err(e) = result {
            failed += 1;
            *errors.entry(e.to_string()).or_default() += 1;
        }
        show(done, failed);
    }
}

/// Collects the outcomes of the tasks of `set` into `out`, calling `refresh` meanwhile.
/// Cancel safe: outcomes collected before a cancellation stay in `out`.
pub(crate) async fn join_all<T: 'static>(
    set: &mut JoinSet<Option<T>>,
    out: &mut Vec<T>,
    refresh: impl Fn(),
) -> Result<(), JoinError> {
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    loop {
        tokio::select! {
            joined = set.join_next() => match joined {
                Some(outcome) => out.extend(outcome?),
                None => return Ok(()),
            },
            _ = ticker.tick() => refresh(),
        }
    }
}
