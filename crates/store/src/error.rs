//! The store's error type.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory or database file could not be used.
    #[error("cannot open store at {path}: {source}")]
    Open {
        /// The database path.
        path: std::path::PathBuf,
        /// What went wrong.
        source: rusqlite::Error,
    },
    /// A stored row holds a frame kind this version does not know.
    #[error("stored entry has unknown frame kind {0}")]
    UnknownKind(u8),
    /// A stored name is no longer a valid name.
    #[error("stored name is invalid: {0}")]
    InvalidName(#[from] kanava_core::NameError),
    /// A stored name is no longer a valid chat name.
    #[error("stored chat name is invalid: {0:?}")]
    InvalidNick(String),
    /// The transaction this operation was part of failed and was rolled back.
    #[error("store transaction failed: {0}")]
    BatchFailed(std::sync::Arc<StoreError>),
    /// The cluster store failed (the NATS link, JetStream, or a record it holds).
    #[error("cluster: {0}")]
    Cluster(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The disk budget refused the write.
    #[error("not stored: {0}")]
    Disk(#[from] kanava_core::DiskRefusal),
    /// The store did not answer in time (a cluster electing a leader, without quorum, or
    /// partitioned); trying again later may succeed. For a frame: it may still be stored, and
    /// none its sender queued after it will be.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store's writer has stopped (the server is shutting down or the writer failed).
    #[error("the store is closed")]
    Closed,
    /// A database failed SQLite's integrity check; what it found.
    #[error("the database is damaged: {0}")]
    Corrupt(String),
}
