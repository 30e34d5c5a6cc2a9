//! Backups of a data directory while the server runs, and restoring one: `kanava backup`
//! writes one tar file holding a snapshot of the store (SQLite's online backup), the debug-me
//! logs (each up to its last complete line, as a log being written may end mid-line), and every
//! other file (the SSH host key, certificates, the ACME account). `kanava restore` unpacks one
//! into a new data directory.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The store's database in a data directory.
const DATABASE: &str = "kanava.db";

/// What a backup holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// Files in the backup, the database included.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Writes a backup of the data directory `data` to `file`, atomically: a partial backup never
/// has `file`'s name. The server may be running.
pub fn backup(data: &Path, file: &Path) -> anyhow::Result<BackupSummary> {
    if !data.join(DATABASE).is_file() {
        bail!(
            "{} holds no {DATABASE}: not a kanava data directory",
            data.display()
        );
    }
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".kanava-backup-")
        .tempdir_in(parent)
        .with_context(|| format!("making a temporary directory in {}", parent.display()))?;
    let snapshot = staging.path().join(DATABASE);
    kanava_store::backup::backup_database(&data.join(DATABASE), &snapshot)
        .with_context(|| format!("copying {}", data.join(DATABASE).display()))?;
    let partial = staging.path().join("backup.tar");
    let mut summary = BackupSummary::default();
    {
        let mut archive = tar::Builder::new(
            File::create(&partial).with_context(|| format!("creating {}", partial.display()))?,
        );
        add_file(
            &mut archive,
            &snapshot,
            Path::new(DATABASE),
            false,
            &mut summary,
        )?;
        for (path, name) in data_files(data)? {
            let log = name.starts_with("debug-me") && name.extension().is_some_and(|e| e == "log");
            add_file(&mut archive, &path, &name, log, &mut summary)?;
        }
        let file = archive.into_inner().context("finishing the backup")?;
        file.sync_all().context("writing the backup to disk")?;
    }
    std::fs::rename(&partial, file)
        .with_context(|| format!("moving the backup to {}", file.display()))?;
    Ok(summary)
}

/// Every file under `data` other than the live database and its journal, with its path
/// relative to `data`, sorted.
fn data_files(data: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let mut files = Vec::new();
    let mut dirs = vec![data.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let path = entry.path();
            let kind = entry.file_type()?;
            let name = path.strip_prefix(data).expect("under data").to_owned();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() && !name.to_str().is_some_and(|n| n.starts_with(DATABASE)) {
                files.push((path, name));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Adds `path` to the archive as `name`, with its permissions: a debug-me log (`log`) up to its
/// last complete line, as one being written may end mid-line.
fn add_file(
    archive: &mut tar::Builder<File>,
    path: &Path,
    name: &Path,
    log: bool,
    summary: &mut BackupSummary,
) -> anyhow::Result<()> {
    let reading = || format!("reading {}", path.display());
    let mut source = File::open(path).with_context(reading)?;
    let metadata = source.metadata().with_context(reading)?;
    let size = if log {
        let complete =
            kanava_debugme_server::complete_length_of(&mut source).with_context(reading)?;
        source.rewind().with_context(reading)?;
        complete
    } else {
        metadata.len()
    };
    let mut header = tar::Header::new_gnu();
    header.set_metadata(&metadata);
    header.set_size(size);
    header.set_cksum();
    archive
        .append_data(&mut header, name, (&mut source).take(size))
        .with_context(|| format!("adding {} to the backup", path.display()))?;
    summary.files += 1;
    summary.bytes += size;
    Ok(())
}

/// Unpacks the backup `file` into `data`, which must not exist yet (or be empty): a server
/// started on it afterwards serves what the backup holds.
pub fn restore(file: &Path, data: &Path) -> anyhow::Result<BackupSummary> {
    if data.exists()
        && std::fs::read_dir(data)
            .with_context(|| format!("reading {}", data.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty: restore into a new directory, then point --data at it",
            data.display()
        );
    }
    let parent = data
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".kanava-restore-")
        .tempdir_in(parent)
        .with_context(|| format!("making a temporary directory in {}", parent.display()))?;
    let mut archive =
        tar::Archive::new(File::open(file).with_context(|| format!("reading {}", file.display()))?);
    let mut summary = BackupSummary::default();
    for entry in archive
        .entries()
        .with_context(|| format!("reading {}", file.display()))?
    {
        let mut entry = entry.with_context(|| format!("reading {}", file.display()))?;
        let name = entry.path()?.into_owned();
        if !entry.header().entry_type().is_file() {
            bail!("{}: {} is not a plain file", file.display(), name.display());
        }
        summary.bytes += entry.size();
        if !entry
            .unpack_in(staging.path())
            .with_context(|| format!("unpacking {}", name.display()))?
        {
            bail!(
                "{}: {} points outside the data directory",
                file.display(),
                name.display()
            );
        }
        summary.files += 1;
    }
    if !staging.path().join(DATABASE).is_file() {
        bail!(
            "{} holds no {DATABASE}: not a kanava backup",
            file.display()
        );
    }
    File::open(staging.path())
        .and_then(|dir| dir.sync_all())
        .context("writing the restored files to disk")?;
    let restored = staging.keep();
    if data.exists() {
        std::fs::remove_dir(data).with_context(|| format!("replacing {}", data.display()))?;
    }
    std::fs::rename(&restored, data)
        .with_context(|| format!("moving the restored files to {}", data.display()))?;
    Ok(summary)
}
