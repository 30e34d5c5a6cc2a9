//! A role's own session log: one JSON line per message in debug-me's format, named
//! `debug-me.<session>.log` as debug-me names it, written as the session goes so that what a
//! client saw is on disk even if it is killed.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use kanava_debugme::json::encode_line;
use kanava_debugme::model::LogEntry;

/// Where kanava's clients keep their logs by default: `$XDG_DATA_HOME/kanava/debug-me`, else
/// `~/.local/share/kanava/debug-me`.
pub fn default_log_dir() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("kanava/debug-me"))
}

/// An open session log.
#[derive(Debug)]
pub struct SessionLog {
    file: File,
    path: PathBuf,
}

impl SessionLog {
    /// Creates `debug-me.<id>.log` in `dir` (made, private, if missing); an existing file of
    /// that name is not overwritten: a numbered name is used instead.
    pub fn create_in(dir: &Path, id: &str) -> std::io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut path = dir.join(format!("debug-me.{id}.log"));
        let mut n = 0;
        loop {
            match File::options().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok(Self { file, path }),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {
                    n += 1;
                    path = dir.join(format!("debug-me.{id}.{n}.log"));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Creates (or truncates) the log at exactly `path`.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: File::create(path)?,
            path: path.to_owned(),
        })
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry`, stamped with the current time.
    pub fn append(&mut self, entry: LogEntry) -> std::io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let line = encode_line(&entry.at(now)) + "\n";
        self.file.write_all(line.as_bytes())
    }

    /// Makes the log durable.
    pub fn finish(self) -> std::io::Result<PathBuf> {
        self.file.sync_all()?;
        Ok(self.path)
    }
}
