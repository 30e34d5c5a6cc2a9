//! A consistent copy of the store's database while a server writes to it: SQLite's online
//! backup reads one snapshot of the database (and its write-ahead log), page by page, without
//! stopping the writer for longer than each step.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::StoreError;

/// Pages copied per step of the backup; the writer may go on between steps.
const PAGES_PER_STEP: std::ffi::c_int = 1024;

/// Copies the database at `source` into a new database at `destination` (which must not
/// exist), as one snapshot, and checks the copy. The source is opened read-only.
pub fn backup_database(source: &Path, destination: &Path) -> Result<(), StoreError> {
    let open_error = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Open { path, source }
    };
    let from = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error(source))?;
    from.busy_timeout(Duration::from_secs(5))
        .map_err(open_error(source))?;
    let mut to = Connection::open_with_flags(
        destination,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error(destination))?;
    {
        let backup = rusqlite::backup::Backup::new(&from, &mut to)?;
        backup.run_to_completion(PAGES_PER_STEP, Duration::ZERO, None)?;
    }
    let check: String = to.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(StoreError::Corrupt(check));
    }
    Ok(())
}
