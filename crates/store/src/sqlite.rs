//! The embedded store: one SQLite database in the data directory, written by one thread.
//!
//! Every operation goes to the writer thread, which applies what is queued in transactions
//! (group commit): with `synchronous=FULL` in WAL mode a commit is one fsync, so many frames
//! arriving together cost one fsync, and replies go out only after it. Reads go through the same
//! thread so that they are ordered with writes and purges. Which requests share a transaction is
//! decided by the fair [`schedule`]: a batch is bounded in bytes and filled round-robin across
//! sources, so one source's bulk writes cannot delay another's frames by more than one batch.
//!
//! Appended frames are charged to their sender's source in the [`DiskBudget`] before they are
//! queued and given back when retention or a purge deletes them; purged space is returned to the
//! filesystem (incremental vacuum) and the WAL is kept short. A write that fails for want of disk
//! or an I/O error marks the store unwritable (see [`StoreHealth`]) until a probe write succeeds.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kanava_core::{
    Ban, ChannelName, Claim, DiskBudget, DiskRefusal, Entry, FrameKind, HistoryLimits, Identity,
    IdentityKey, KeyAdded, KeySharing, NewEntry, Nick, PrivateMessage, Rename, Topic, Uid,
};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, params};
use tokio::sync::oneshot;

use crate::{Pending, Store, StoreError, StoreHealth, StoredChannel};

mod accounts;
mod schedule;

use schedule::{BatchLimits, Class, Scheduler};

/// How much one transaction holds: few enough bytes that a commit (and so the wait of a frame
/// queued behind it) stays short under bulk load.
const BATCH_LIMITS: BatchLimits = BatchLimits {
    requests: 4096,
    bytes: 512 * 1024,
};

/// Disk charged for a stored frame beyond its payload and sender: the row, its index entry and
/// page slack, so that the budget tracks the file rather than just the payload.
const ROW_OVERHEAD: u64 = 96;

/// How often an unwritable store tries a write again.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes a probe writes next to the database: a store is writable again once this much fits.
const PROBE_BYTES: usize = 256 * 1024;

/// Free pages that trigger an incremental vacuum after a commit (4 MiB of 4 KiB pages), and the
/// most pages one such step gives back, so that no commit waits long behind it.
const VACUUM_THRESHOLD_PAGES: i64 = 1024;
const VACUUM_STEP_PAGES: i64 = 4096;

/// Largest the WAL file is left after a checkpoint: about what it holds before SQLite's
/// automatic checkpoint (1000 pages) moves it into the database.
const JOURNAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

/// Disk the WAL and its index may hold beyond the history itself (the automatic checkpoint's
/// size, one batch and the index), charged to no source when the store opens so that the data
/// directory stays within `--max-disk`.
const JOURNAL_HEADROOM: u64 = JOURNAL_SIZE_LIMIT as u64 + 1024 * 1024;

/// Channels one purge transaction deletes at most: a purge of many idle channels commits in
/// steps, so that the WAL stays short and no single commit runs long.
const PURGE_CHUNK: usize = 1000;

/// Schema version stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 6;

/// The tables. `channel.kept_entries` and `kept_bytes` count a channel's retained history (rows
/// and payload bytes), kept in the transaction that changes it, so that retention knows whether
/// to evict without reading the history; NULL until counted (a channel from before version 6
/// is counted the first time retention looks at it).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channel (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    last_seq INTEGER NOT NULL,
    last_activity_ms INTEGER NOT NULL,
    kept_entries INTEGER,
    kept_bytes INTEGER
);
CREATE TABLE IF NOT EXISTS history (
    channel_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    sender TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    payload BLOB NOT NULL,
    source TEXT,
    charged INTEGER NOT NULL DEFAULT 0,
    verified INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS channel_by_activity ON channel (last_activity_ms);
CREATE TABLE IF NOT EXISTS store_probe (
    id INTEGER PRIMARY KEY,
    written_ms INTEGER NOT NULL
);
";

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Request {
    /// Entries from a source, with the bytes charged to it for them.
    Append(Vec<NewEntry>, Option<IpAddr>, u64, Reply<()>),
    Load(ChannelName, Reply<StoredChannel>),
    PurgeIdle(u64, Vec<ChannelName>, Reply<Vec<ChannelName>>),
    Sync(Reply<()>),
    /// Everything about accounts: reads and writes that need nothing from the batch around them.
    Job(Box<dyn Job>),
}

/// A request run inside the batch's transaction, replying only once the transaction committed.
trait Job: Send {
    fn run(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError>;
    fn reply(self: Box<Self>);
    fn fail(self: Box<Self>, cause: &Arc<StoreError>);
}

/// A [`Job`] made of a function of the transaction and the reply for its result.
struct Query<T, F> {
    run: Option<F>,
    result: Option<T>,
    reply: Reply<T>,
}

impl<T, F> Job for Query<T, F>
where
    T: Send,
    F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if let Some(run) = self.run.take() {
            self.result = Some(run(tx)?);
        }
        Ok(())
    }

    fn reply(self: Box<Self>) {
        match self.result {
            Some(result) => drop(self.reply.send(Ok(result))),
            None => drop(self.reply.send(Err(StoreError::Closed))),
        }
    }

    fn fail(self: Box<Self>, cause: &Arc<StoreError>) {
        let _ = self
            .reply
            .send(Err(StoreError::BatchFailed(Arc::clone(cause))));
    }
}

/// A request's result, valid only once the transaction that produced it has committed.
enum Outcome {
    Done,
    Loaded(StoredChannel),
    Purged(Vec<ChannelName>),
}

impl Request {
    /// Sends the committed outcome to the requester. A requester that stopped waiting is not an
    /// error.
    fn reply(self, outcome: Outcome) {
        match (self, outcome) {
            (Request::Append(_, _, _, tx) | Request::Sync(tx), _) => drop(tx.send(Ok(()))),
            (Request::Load(_, tx), Outcome::Loaded(v)) => drop(tx.send(Ok(v))),
            (Request::PurgeIdle(_, _, tx), Outcome::Purged(v)) => drop(tx.send(Ok(v))),
            (Request::Job(job), _) => job.reply(),
            (request, _) => request.fail(&Arc::new(StoreError::Closed)),
        }
    }

    /// Tells the requester that the transaction holding its request failed.
    fn fail(self, cause: &Arc<StoreError>) {
        let error = || StoreError::BatchFailed(Arc::clone(cause));
        match self {
            Request::Append(_, _, _, tx) | Request::Sync(tx) => drop(tx.send(Err(error()))),
            Request::Load(_, tx) => drop(tx.send(Err(error()))),
            Request::PurgeIdle(_, _, tx) => drop(tx.send(Err(error()))),
            Request::Job(job) => job.fail(cause),
        }
    }

    /// Where the scheduler places this request.
    fn class(&self) -> Class {
        match self {
            Request::Append(entries, source, charged, _) => {
                let mut channels: Vec<ChannelName> =
                    entries.iter().map(|e| e.channel.clone()).collect();
                channels.sort();
                channels.dedup();
                Class::Append {
                    source: *source,
                    bytes: *charged,
                    channels,
                }
            }
            Request::Load(channel, _) => Class::Read(channel.clone()),
            Request::PurgeIdle(..) | Request::Sync(_) => Class::Barrier,
            Request::Job(_) => Class::Job,
        }
    }
}

/// What the store's handles and its writer share.
#[derive(Debug)]
struct Shared {
    /// The data directory's disk budget; `None` charges nothing.
    disk: Option<Arc<DiskBudget>>,
    /// Why writes fail, while they do.
    unwritable: Mutex<Option<String>>,
}

impl Shared {
    fn unwritable(&self) -> Option<String> {
        self.unwritable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_unwritable(&self, reason: Option<String>) {
        let mut unwritable = self.unwritable.lock().unwrap_or_else(|p| p.into_inner());
        metrics::gauge!("kanava_store_writable").set(if reason.is_none() { 1.0 } else { 0.0 });
        match (&*unwritable, &reason) {
            (None, Some(reason)) => tracing::error!(reason, "store writes fail; /healthz says so"),
            (Some(_), None) => tracing::info!("store writes succeed again"),
            _ => {}
        }
        *unwritable = reason;
    }

    fn release(&self, source: Option<IpAddr>, bytes: u64) {
        if let Some(disk) = &self.disk
            && bytes > 0
        {
            disk.release(source, bytes);
        }
    }
}

/// Bytes a frame costs on disk, as charged to its source.
fn cost(sender: &Uid, payload_len: usize) -> u64 {
    payload_len as u64 + sender.as_str().len() as u64 + ROW_OVERHEAD
}

fn charge_of(entry: &NewEntry) -> u64 {
    cost(&entry.entry.sender, entry.entry.payload.len())
}

/// The SQLite store. Dropping every handle stops the writer after it has finished what was queued.
#[derive(Debug)]
pub struct SqliteStore {
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer thread; history
    /// is charged to no disk budget.
    pub fn open(path: &Path, limits: HistoryLimits) -> Result<Self, StoreError> {
        Self::open_with_budget(path, limits, None)
    }

    /// Opens the database at `path` like [`open`](Self::open), charging appended history to
    /// `disk` under each frame's source and giving back what retention and purges delete.
    pub fn open_with_budget(
        path: &Path,
        limits: HistoryLimits,
        disk: Option<Arc<DiskBudget>>,
    ) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_error)?;
        incremental_vacuum_mode(&conn).map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
            .map_err(open_error)?;
        migrate(&conn).map_err(open_error)?;
        // Whatever an earlier run left in the WAL goes into the database now, and the WAL
        // starts short.
        checkpoint(&conn);

        if let Some(disk) = &disk
            && disk.charge(None, JOURNAL_HEADROOM).is_err()
        {
            tracing::warn!(
                headroom = JOURNAL_HEADROOM,
                "the disk budget has no room left for the store's write-ahead log"
            );
        }
        if let Some(disk) = &disk {
            attribute_sources(&conn, disk).map_err(open_error)?;
        }
        let shared = Arc::new(Shared {
            disk,
            unwritable: Mutex::new(None),
        });
        let (requests, queue) = mpsc::channel();
        let mut probe = path.as_os_str().to_owned();
        probe.push(".probe");
        let mut writer = Writer {
            conn,
            limits,
            channel_ids: HashMap::new(),
            shared: Arc::clone(&shared),
            probe_path: probe.into(),
        };
        thread::Builder::new()
            .name("kanava-store".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| open_error(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        Ok(Self { requests, shared })
    }

    /// Runs `run` in the writer's next transaction.
    fn query<T, F>(&self, run: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(|reply| {
            Request::Job(Box::new(Query {
                run: Some(run),
                result: None,
                reply,
            }))
        })
    }

    /// Charges `bytes` to `source` in the disk budget, if there is one.
    fn charge_disk(&self, source: Option<IpAddr>, bytes: u64) -> Result<(), DiskRefusal> {
        match &self.shared.disk {
            Some(disk) => disk.charge(source, bytes),
            None => Ok(()),
        }
    }

    fn submit<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Pending<T> {
        let (tx, pending) = Pending::channel();
        // If the writer is gone the request (and its reply sender) is dropped, which the
        // Pending reports as `StoreError::Closed`.
        let _ = self.requests.send(make(tx));
        pending
    }
}

impl Store for SqliteStore {
    fn append(&self, entries: Vec<NewEntry>) -> Pending<()> {
        let bytes = entries.iter().map(charge_of).sum();
        if let Err(refusal) = self.charge_disk(None, bytes) {
            let (tx, pending) = Pending::channel();
            let _ = tx.send(Err(StoreError::Disk(refusal)));
            return pending;
        }
        self.append_from(None, entries)
    }

    fn charge_frame(
        &self,
        source: Option<IpAddr>,
        sender: &Uid,
        payload_len: usize,
    ) -> Result<(), DiskRefusal> {
        self.charge_disk(source, cost(sender, payload_len))
    }

    fn append_from(&self, source: Option<IpAddr>, entries: Vec<NewEntry>) -> Pending<()> {
        let charged = entries.iter().map(charge_of).sum();
        self.submit(|tx| Request::Append(entries, source, charged, tx))
    }

    fn health(&self) -> StoreHealth {
        match self.shared.unwritable() {
            None => StoreHealth::Writable,
            Some(reason) => StoreHealth::Unwritable(reason),
        }
    }

    fn load(&self, channel: ChannelName) -> Pending<StoredChannel> {
        self.submit(|tx| Request::Load(channel, tx))
    }

    fn purge_idle(&self, idle_before_ms: u64, keep: Vec<ChannelName>) -> Pending<Vec<ChannelName>> {
        self.submit(|tx| Request::PurgeIdle(idle_before_ms, keep, tx))
    }

    fn sync(&self) -> Pending<()> {
        self.submit(Request::Sync)
    }

    fn history_before(
        &self,
        channel: ChannelName,
        before_seq: u64,
        limit: usize,
    ) -> Pending<Vec<Entry>> {
        self.query(move |tx| history_before(tx, &channel, before_seq, limit))
    }

    fn identity(&self, nick: Nick) -> Pending<Option<Identity>> {
        self.query(move |tx| accounts::identity(tx, &nick))
    }

    fn claim_identity(&self, nick: Nick, key: IdentityKey, sharing: KeySharing) -> Pending<Claim> {
        self.query(move |tx| accounts::claim(tx, &nick, &key, sharing))
    }

    fn add_key(&self, nick: Nick, key: IdentityKey, sharing: KeySharing) -> Pending<KeyAdded> {
        self.query(move |tx| accounts::add_key(tx, &nick, &key, sharing))
    }

    fn rename_identity(
        &self,
        from: Nick,
        to: Nick,
        now_ms: u64,
        cooldown_ms: u64,
    ) -> Pending<Rename> {
        self.query(move |tx| accounts::rename(tx, &from, &to, now_ms, cooldown_ms))
    }

    fn expire_identities(&self, unused_before_ms: u64) -> Pending<Vec<Nick>> {
        self.query(move |tx| accounts::expire(tx, unused_before_ms))
    }

    fn remove_key(&self, nick: Nick, fingerprint: String) -> Pending<bool> {
        self.query(move |tx| accounts::remove_key(tx, &nick, &fingerprint))
    }

    fn identities(&self) -> Pending<Vec<Identity>> {
        self.query(accounts::identities)
    }

    fn release_identity(&self, nick: Nick) -> Pending<bool> {
        self.query(move |tx| accounts::release(tx, &nick))
    }

    fn send_private(&self, message: PrivateMessage, unread: bool) -> Pending<PrivateMessage> {
        self.query(move |tx| accounts::send_private(tx, message, unread))
    }

    fn take_unread_private(&self, nick: Nick) -> Pending<Vec<PrivateMessage>> {
        self.query(move |tx| accounts::take_unread_private(tx, &nick))
    }

    fn ban(&self, bans: Vec<Ban>) -> Pending<()> {
        self.query(move |tx| accounts::ban(tx, &bans))
    }

    fn unban(&self, fingerprint_or_nick: String) -> Pending<Vec<Ban>> {
        self.query(move |tx| accounts::unban(tx, &fingerprint_or_nick))
    }

    fn bans(&self, now_ms: u64) -> Pending<Vec<Ban>> {
        self.query(move |tx| accounts::bans(tx, None, now_ms))
    }

    fn ban_of(&self, fingerprint: String, now_ms: u64) -> Pending<Option<Ban>> {
        self.query(move |tx| Ok(accounts::bans(tx, Some(&fingerprint), now_ms)?.pop()))
    }

    fn set_topic(&self, topic: Topic) -> Pending<()> {
        self.query(move |tx| accounts::set_topic(tx, &topic))
    }

    fn topic(&self, room: ChannelName) -> Pending<Option<Topic>> {
        self.query(move |tx| accounts::topic(tx, &room))
    }
}

/// Creates the tables, or brings an older database to this version; refuses a newer one.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database has schema version {version}; this kanava knows up to {SCHEMA_VERSION}"
        )));
    }
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(SCHEMA)?;
    // History stored before version 4 has no source and was charged nothing.
    let has_source: bool = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('history') WHERE name = 'source'",
        [],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_source {
        tx.execute_batch(
            "ALTER TABLE history ADD COLUMN source TEXT;
             ALTER TABLE history ADD COLUMN charged INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    // Before version 5 no sender was verified: those entries read as unverified.
    let has_verified: bool = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('history') WHERE name = 'verified'",
        [],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_verified {
        tx.execute_batch("ALTER TABLE history ADD COLUMN verified INTEGER NOT NULL DEFAULT 0;")?;
    }
    // Before version 6 retention read a channel's whole history on every append. Each channel
    // is counted once, when retention first looks at it, so that opening a database of many
    // channels stays quick.
    let has_counters: bool = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('channel') WHERE name = 'kept_entries'",
        [],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_counters {
        tx.execute_batch(
            "ALTER TABLE channel ADD COLUMN kept_entries INTEGER;
             ALTER TABLE channel ADD COLUMN kept_bytes INTEGER;",
        )?;
    }
    // What each source holds is read back at start-up from this index alone.
    tx.execute_batch("CREATE INDEX IF NOT EXISTS history_by_source ON history (source, charged);")?;
    tx.execute_batch(accounts::SCHEMA)?;
    accounts::migrate_identities(&tx)?;
    accounts::migrate_names(&tx, now_ms())?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// Tells `disk` what each source's stored history holds, so that a restart does not forget
/// how much of its share an address has used.
fn attribute_sources(conn: &Connection, disk: &DiskBudget) -> rusqlite::Result<()> {
    let mut statement = conn.prepare(
        "SELECT source, sum(charged) FROM history WHERE source IS NOT NULL GROUP BY source",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let source: String = row.get(0)?;
        let bytes: i64 = row.get(1)?;
        if let Ok(source) = source.parse::<IpAddr>() {
            disk.attribute(source, u64::try_from(bytes).unwrap_or(0));
        }
    }
    Ok(())
}

/// Puts the database in `auto_vacuum=INCREMENTAL` mode, so that purged space can be given back
/// to the filesystem: a new database just takes the setting; an existing one is rebuilt once
/// (`VACUUM`), which needs free space about its size — without it the store still opens, and
/// the rebuild is tried again at the next start.
fn incremental_vacuum_mode(conn: &Connection) -> rusqlite::Result<()> {
    const INCREMENTAL: i64 = 2;
    let mode: i64 = conn.pragma_query_value(None, "auto_vacuum", |row| row.get(0))?;
    if mode == INCREMENTAL {
        return Ok(());
    }
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))?;
    if tables > 0 {
        tracing::info!("rebuilding the database once so that purged space is given back");
        if let Err(error) = conn.execute_batch("VACUUM") {
            tracing::warn!(%error, "rebuilding the database failed; purged space stays in the file");
        }
    }
    Ok(())
}

/// The time now, in Unix milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Moves the WAL into the database and truncates it (to nothing when no reader holds it).
fn checkpoint(conn: &Connection) {
    if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(%error, "WAL checkpoint failed");
    }
}

/// Gives up to `pages` free pages back to the filesystem. The pragma yields a row per page freed
/// and frees them only as it is stepped.
fn incremental_vacuum(conn: &Connection, pages: i64) -> rusqlite::Result<()> {
    let mut statement = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
    let mut rows = statement.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Why writes fail, when `error` says that the disk or the database file cannot take writes
/// (as opposed to a request that is wrong in itself).
fn write_failure(error: &StoreError) -> Option<String> {
    let StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, message)) = error else {
        return None;
    };
    matches!(
        code.code,
        ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::ReadOnly
            | ErrorCode::CannotOpen
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::NotADatabase
            | ErrorCode::PermissionDenied
    )
    .then(|| message.clone().unwrap_or_else(|| code.to_string()))
}

struct Writer {
    conn: Connection,
    limits: HistoryLimits,
    /// Channel row ids by name; cleared when channels are purged.
    channel_ids: HashMap<ChannelName, i64>,
    shared: Arc<Shared>,
    /// A file next to the database that probes write to see whether the disk takes writes.
    probe_path: PathBuf,
}

/// A purge of idle channels under way. It deletes a chunk of channels at a time, then gives
/// their space back a step at a time, with the other requests' batches in between: a purge
/// of a million channels (at start-up, say) delays no one's frames by more than one step.
struct PurgeRun {
    before: u64,
    keep: Vec<ChannelName>,
    /// The row id after which the next chunk starts.
    after_id: i64,
    deleted: Vec<ChannelName>,
    /// Whether every chunk is deleted and the space is being given back.
    reclaiming: bool,
    /// The purge request, answered when the run ends.
    request: Request,
}

/// Bytes that deleting history gives back, by the source they were charged to.
type Released = HashMap<Option<IpAddr>, u64>;

impl Writer {
    fn run(&mut self, queue: mpsc::Receiver<Request>) {
        let mut scheduler = Scheduler::default();
        let mut purge: Option<PurgeRun> = None;
        loop {
            if scheduler.is_empty() && purge.is_none() {
                let first = if self.shared.unwritable().is_some() {
                    match queue.recv_timeout(PROBE_INTERVAL) {
                        Ok(request) => request,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            self.probe();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                } else {
                    match queue.recv() {
                        Ok(request) => request,
                        Err(_) => break,
                    }
                };
                scheduler.push(first.class(), first);
            }
            while let Ok(request) = queue.try_recv() {
                scheduler.push(request.class(), request);
            }
            let mut batch = scheduler.next_batch(BATCH_LIMITS);
            // A purge is a barrier, so it always comes alone; it then runs a step at a time,
            // one after each batch of other requests.
            if let [Request::PurgeIdle(before, keep, _)] = batch.as_mut_slice() {
                let (before, keep) = (*before, std::mem::take(keep));
                let Some(request) = batch.pop() else { continue };
                if purge.is_some() {
                    // The purge under way covers it.
                    request.reply(Outcome::Purged(Vec::new()));
                } else {
                    purge = Some(PurgeRun {
                        before,
                        keep,
                        after_id: 0,
                        deleted: Vec::new(),
                        reclaiming: false,
                        request,
                    });
                }
                continue;
            }
            if !batch.is_empty() {
                self.commit(batch, purge.is_some());
            }
            if let Some(run) = &mut purge {
                match self.purge_step(run) {
                    Ok(false) => {}
                    Ok(true) => {
                        if let Some(run) = purge.take() {
                            run.request.reply(Outcome::Purged(run.deleted));
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "purging idle channels failed");
                        if let Some(reason) = write_failure(&error) {
                            self.shared.set_unwritable(Some(reason));
                        }
                        if let Some(run) = purge.take() {
                            run.request.fail(&Arc::new(error));
                        }
                    }
                }
            }
        }
        tracing::debug!("store writer stopped");
    }

    /// Applies a batch of requests in one transaction and answers them; `purging` says a purge
    /// is under way (see [`apply`](Self::apply)).
    fn commit(&mut self, mut batch: Vec<Request>, purging: bool) {
        // Only a batch that certainly wrote says the disk takes writes again: a read-only
        // transaction commits whatever the disk's state.
        let writes = batch.iter().any(|r| matches!(r, Request::Append(..)));
        let started = Instant::now();
        let mut released = Released::new();
        match self.apply(&mut batch, &mut released, purging) {
            Ok(outcomes) => {
                metrics::histogram!("kanava_store_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("kanava_store_commits_total").increment(1);
                for (source, bytes) in released {
                    self.shared.release(source, bytes);
                }
                if writes {
                    self.shared.set_unwritable(None);
                }
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    request.reply(outcome);
                }
                self.give_back_space();
            }
            Err(error) => {
                tracing::error!(%error, requests = batch.len(), "store transaction failed");
                metrics::counter!("kanava_store_failed_commits_total").increment(1);
                if let Some(reason) = write_failure(&error) {
                    self.shared.set_unwritable(Some(reason));
                }
                // The rollback undid the whole batch; forget cached ids it may have added.
                self.channel_ids.clear();
                let cause = Arc::new(error);
                for request in batch {
                    if let Request::Append(_, source, charged, _) = &request {
                        self.shared.release(*source, *charged);
                    }
                    request.fail(&cause);
                }
            }
        }
    }

    /// One step of `run`: deletes the next [`PURGE_CHUNK`] idle channels (except the kept
    /// ones) in a transaction of its own, giving back their disk charge as it commits; once
    /// none are left, gives back [`VACUUM_STEP_PAGES`] free pages and truncates the WAL. Says
    /// whether the run is over.
    fn purge_step(&mut self, run: &mut PurgeRun) -> Result<bool, StoreError> {
        if run.reclaiming {
            return Ok(self.give_back_step());
        }
        let started = Instant::now();
        let mut released = Released::new();
        let tx = self.conn.transaction()?;
        let (chunk, last_id) = purge_idle(
            &tx,
            run.before,
            &run.keep,
            run.after_id,
            PURGE_CHUNK,
            &mut released,
        )?;
        if last_id.is_none() {
            accounts::purge(&tx, run.before)?;
        }
        tx.commit()?;
        metrics::histogram!("kanava_store_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("kanava_store_commits_total").increment(1);
        metrics::counter!("kanava_store_purged_channels_total").increment(chunk.len() as u64);
        self.channel_ids.clear();
        for (source, bytes) in released {
            self.shared.release(source, bytes);
        }
        run.deleted.extend(chunk);
        match last_id {
            Some(id) => run.after_id = id,
            None if run.deleted.is_empty() => return Ok(true),
            None => {
                self.shared.set_unwritable(None);
                run.reclaiming = true;
            }
        }
        Ok(false)
    }

    /// Tries a write: `PROBE_BYTES` into a file next to the database, then a row; marks the
    /// store writable again when both succeed.
    fn probe(&mut self) {
        let file = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&self.probe_path)?;
            let written = file
                .write_all(&vec![0u8; PROBE_BYTES])
                .and_then(|()| file.sync_all());
            drop(file);
            std::fs::remove_file(&self.probe_path)?;
            written
        };
        if let Err(error) = file() {
            self.shared
                .set_unwritable(Some(format!("probe write failed: {error}")));
            return;
        }
        let row = self.conn.execute(
            "INSERT OR REPLACE INTO store_probe (id, written_ms) VALUES (1, ?1)",
            [now_ms() as i64],
        );
        match row {
            Ok(_) => self.shared.set_unwritable(None),
            Err(error) => {
                let error = StoreError::from(error);
                let reason = write_failure(&error).unwrap_or_else(|| error.to_string());
                self.shared.set_unwritable(Some(reason));
            }
        }
    }

    /// Gives a bounded step of free pages back to the filesystem whenever many pages are free
    /// (retention frees pages that new frames mostly reuse, so this rarely runs under steady
    /// load).
    fn give_back_space(&mut self) {
        if self.free_pages() >= VACUUM_THRESHOLD_PAGES {
            self.vacuum(VACUUM_STEP_PAGES);
        }
    }

    /// Gives up to [`VACUUM_STEP_PAGES`] free pages back to the filesystem after a purge and
    /// truncates the WAL, so that the WAL never holds more than one step; says whether none
    /// are left.
    fn give_back_step(&mut self) -> bool {
        let free = self.free_pages();
        if free > 0 && !self.vacuum(free.min(VACUUM_STEP_PAGES)) {
            return true;
        }
        checkpoint(&self.conn);
        free <= VACUUM_STEP_PAGES
    }

    /// The database's free pages.
    fn free_pages(&self) -> i64 {
        self.conn
            .pragma_query_value(None, "freelist_count", |row| row.get::<_, i64>(0))
            .unwrap_or(0)
    }

    /// Gives `pages` free pages back to the filesystem; says whether it could.
    fn vacuum(&mut self, pages: i64) -> bool {
        let started = Instant::now();
        if let Err(error) = incremental_vacuum(&self.conn, pages) {
            tracing::warn!(%error, "incremental vacuum failed");
            return false;
        }
        tracing::debug!(pages, elapsed = ?started.elapsed(), "gave free pages back");
        true
    }

    /// Applies the batch in one transaction; the outcomes are valid only once it has committed.
    /// While a purge is under way (`purging`), a channel loaded counts as active, so that it is
    /// not purged under its new members.
    fn apply(
        &mut self,
        batch: &mut [Request],
        released: &mut Released,
        purging: bool,
    ) -> Result<Vec<Outcome>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut touched: HashSet<i64> = HashSet::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        for request in batch.iter_mut() {
            match request {
                Request::Append(entries, source, _, _) => {
                    let source = source.map(|ip| ip.to_string());
                    for new in entries {
                        let id = channel_id(
                            &tx,
                            &mut self.channel_ids,
                            &new.channel,
                            new.entry.time_ms,
                        )?;
                        insert(&tx, id, &new.entry, source.as_deref(), charge_of(new))?;
                        touched.insert(id);
                    }
                    outcomes.push(Outcome::Done);
                }
                Request::Load(channel, _) => {
                    let stored = match existing_channel_id(&tx, &mut self.channel_ids, channel)? {
                        Some(id) => {
                            if touched.remove(&id) {
                                evict(&tx, id, self.limits, released)?;
                            }
                            if purging {
                                // Joined during a purge: active, whatever it was before.
                                tx.prepare_cached(
                                    "UPDATE channel SET last_activity_ms = ?2 WHERE id = ?1",
                                )?
                                .execute(params![id, now_ms() as i64])?;
                            }
                            load(&tx, id)?
                        }
                        None => StoredChannel {
                            entries: Vec::new(),
                            next_seq: 1,
                        },
                    };
                    outcomes.push(Outcome::Loaded(stored));
                }
                // Never batched: `run` takes a purge alone and runs it in steps.
                Request::PurgeIdle(..) => outcomes.push(Outcome::Purged(Vec::new())),
                Request::Sync(_) => outcomes.push(Outcome::Done),
                Request::Job(job) => {
                    job.run(&tx)?;
                    outcomes.push(Outcome::Done);
                }
            }
        }
        for id in touched {
            evict(&tx, id, self.limits, released)?;
        }
        tx.commit()?;
        Ok(outcomes)
    }
}

fn existing_channel_id(
    tx: &Transaction<'_>,
    cache: &mut HashMap<ChannelName, i64>,
    channel: &ChannelName,
) -> Result<Option<i64>, StoreError> {
    if let Some(id) = cache.get(channel) {
        return Ok(Some(*id));
    }
    let id: Option<i64> = tx
        .prepare_cached("SELECT id FROM channel WHERE name = ?1")?
        .query_row([channel.as_str()], |row| row.get(0))
        .optional()?;
    if let Some(id) = id {
        cache.insert(channel.clone(), id);
    }
    Ok(id)
}

fn channel_id(
    tx: &Transaction<'_>,
    cache: &mut HashMap<ChannelName, i64>,
    channel: &ChannelName,
    now_ms: u64,
) -> Result<i64, StoreError> {
    if let Some(id) = existing_channel_id(tx, cache, channel)? {
        return Ok(id);
    }
    tx.prepare_cached(
        "INSERT INTO channel (name, last_seq, last_activity_ms, kept_entries, kept_bytes)
         VALUES (?1, 0, ?2, 0, 0)",
    )?
    .execute(params![channel.as_str(), now_ms as i64])?;
    let id = tx.last_insert_rowid();
    cache.insert(channel.clone(), id);
    Ok(id)
}

fn insert(
    tx: &Transaction<'_>,
    channel_id: i64,
    entry: &Entry,
    source: Option<&str>,
    charged: u64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO history (channel_id, seq, kind, sender, time_ms, payload, source, charged, verified)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        channel_id,
        entry.seq as i64,
        entry.kind.code(),
        entry.sender.as_str(),
        entry.time_ms as i64,
        &entry.payload[..],
        source,
        charged as i64,
        entry.verified,
    ])?;
    tx.prepare_cached(
        "UPDATE channel SET last_seq = max(last_seq, ?2), last_activity_ms = max(last_activity_ms, ?3),
             kept_entries = kept_entries + 1, kept_bytes = kept_bytes + ?4
         WHERE id = ?1",
    )?
    .execute(params![
        channel_id,
        entry.seq as i64,
        entry.time_ms as i64,
        entry.payload.len() as i64
    ])?;
    Ok(())
}

/// Adds what deleted rows of `source, charged` had been charged to `released`.
fn add_released(rows: &mut rusqlite::Rows<'_>, released: &mut Released) -> Result<(), StoreError> {
    while let Some(row) = rows.next()? {
        let source: Option<String> = row.get(0)?;
        let charged: i64 = row.get(1)?;
        let source = source.and_then(|s| s.parse::<IpAddr>().ok());
        *released.entry(source).or_default() += u64::try_from(charged).unwrap_or(0);
    }
    Ok(())
}

/// A channel's retained history as counted: rows and payload bytes, NULL if not counted yet.
const KEPT: &str = "SELECT kept_entries, kept_bytes FROM channel WHERE id = ?1";

/// A channel's retained history counted from the history itself, for a channel from before
/// the counters.
const COUNT: &str =
    "SELECT count(*), coalesce(sum(length(payload)), 0) FROM history WHERE channel_id = ?1";

/// A channel's history oldest first, with each entry's payload size (read from the record
/// header, not the payload).
const OLDEST: &str = "SELECT seq, length(payload) FROM history WHERE channel_id = ?1 ORDER BY seq";

/// Deletes a channel's entries up to a sequence number, returning what they had been charged.
const DELETE_OLDEST: &str =
    "DELETE FROM history WHERE channel_id = ?1 AND seq <= ?2 RETURNING source, charged";

/// Deletes the oldest entries until the newest suffix fits both limits, the same rule as
/// [`kanava_core::HistoryWindow`], and records what they had been charged.
///
/// The channel's counters say whether anything must go, so a channel within its limits costs
/// one row read; otherwise only the entries evicted (and the first one kept) are read, through
/// the primary key. Every entry is evicted once, so retention costs O(1) amortised per append
/// whatever the limits (plus, once per channel from before the counters, one count of its
/// history).
fn evict(
    tx: &Transaction<'_>,
    channel_id: i64,
    limits: HistoryLimits,
    released: &mut Released,
) -> Result<(), StoreError> {
    let max_entries = i64::try_from(limits.max_entries).unwrap_or(i64::MAX);
    let max_bytes = i64::try_from(limits.max_bytes).unwrap_or(i64::MAX);
    let counted: (Option<i64>, Option<i64>) = tx
        .prepare_cached(KEPT)?
        .query_row([channel_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let (mut entries, mut bytes) = match counted {
        (Some(entries), Some(bytes)) => (entries, bytes),
        _ => tx
            .prepare_cached(COUNT)?
            .query_row([channel_id], |row| Ok((row.get(0)?, row.get(1)?)))?,
    };
    let recount = counted.0.is_none() || counted.1.is_none();
    if entries <= max_entries && bytes <= max_bytes && !recount {
        return Ok(());
    }
    let mut last_evicted = None;
    {
        let mut oldest = tx.prepare_cached(OLDEST)?;
        let mut rows = oldest.query([channel_id])?;
        while entries > max_entries || bytes > max_bytes {
            let Some(row) = rows.next()? else {
                // The counters said more than the channel holds: all of it has gone.
                (entries, bytes) = (0, 0);
                break;
            };
            last_evicted = Some(row.get::<_, i64>(0)?);
            entries -= 1;
            bytes -= row.get::<_, i64>(1)?;
        }
    }
    if let Some(last) = last_evicted {
        let mut delete = tx.prepare_cached(DELETE_OLDEST)?;
        add_released(&mut delete.query(params![channel_id, last])?, released)?;
    }
    tx.prepare_cached("UPDATE channel SET kept_entries = ?2, kept_bytes = ?3 WHERE id = ?1")?
        .execute(params![channel_id, entries, bytes])?;
    Ok(())
}

fn load(tx: &Transaction<'_>, channel_id: i64) -> Result<StoredChannel, StoreError> {
    let last_seq: i64 = tx
        .prepare_cached("SELECT last_seq FROM channel WHERE id = ?1")?
        .query_row([channel_id], |row| row.get(0))?;
    let mut statement = tx.prepare_cached(
        "SELECT seq, kind, sender, time_ms, payload, verified FROM history WHERE channel_id = ?1 ORDER BY seq",
    )?;
    let mut rows = statement.query([channel_id])?;
    let mut entries = Vec::new();
    while let Some(row) = rows.next()? {
        entries.push(entry_of(row)?);
    }
    Ok(StoredChannel {
        entries,
        next_seq: last_seq as u64 + 1,
    })
}

/// Up to `limit` entries before `before_seq`, oldest first.
fn history_before(
    tx: &Transaction<'_>,
    channel: &ChannelName,
    before_seq: u64,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let mut statement = tx.prepare_cached(
        "SELECT seq, kind, sender, time_ms, payload, verified FROM history
         WHERE channel_id = (SELECT id FROM channel WHERE name = ?1) AND seq < ?2
         ORDER BY seq DESC LIMIT ?3",
    )?;
    let mut rows = statement.query(params![
        channel.as_str(),
        i64::try_from(before_seq).unwrap_or(i64::MAX),
        i64::try_from(limit).unwrap_or(i64::MAX),
    ])?;
    let mut entries = Vec::new();
    while let Some(row) = rows.next()? {
        entries.push(entry_of(row)?);
    }
    entries.reverse();
    Ok(entries)
}

/// An entry from a row of `seq, kind, sender, time_ms, payload, verified`.
fn entry_of(row: &rusqlite::Row<'_>) -> Result<Entry, StoreError> {
    let code: u8 = row.get(1)?;
    let sender: String = row.get(2)?;
    let payload: Vec<u8> = row.get(4)?;
    Ok(Entry {
        seq: row.get::<_, i64>(0)? as u64,
        kind: FrameKind::from_code(code).ok_or(StoreError::UnknownKind(code))?,
        sender: Uid::new(&sender)?,
        time_ms: row.get::<_, i64>(3)? as u64,
        payload: Bytes::from(payload),
        verified: row.get(5)?,
    })
}

/// Deletes up to `limit` channels idle since before `idle_before_ms` whose id is above
/// `after_id` (except those in `keep`), with their history and topic, recording what their
/// history had been charged. Returns the names deleted, and the last id looked at when more
/// channels may follow.
fn purge_idle(
    tx: &Transaction<'_>,
    idle_before_ms: u64,
    keep: &[ChannelName],
    after_id: i64,
    limit: usize,
    released: &mut Released,
) -> Result<(Vec<ChannelName>, Option<i64>), StoreError> {
    let keep: HashSet<&str> = keep.iter().map(ChannelName::as_str).collect();
    let idle: Vec<(i64, String)> = tx
        .prepare_cached(
            "SELECT id, name FROM channel WHERE last_activity_ms < ?1 AND id > ?2
             ORDER BY id LIMIT ?3",
        )?
        .query_map(
            params![
                idle_before_ms as i64,
                after_id,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .collect::<Result<_, _>>()?;
    let last_id = (idle.len() == limit)
        .then(|| idle.last().map(|(id, _)| *id))
        .flatten();
    let mut purged = Vec::new();
    for (id, name) in idle {
        if keep.contains(name.as_str()) {
            continue;
        }
        {
            let mut statement = tx.prepare_cached(
                "SELECT source, sum(charged) FROM history WHERE channel_id = ?1 GROUP BY source",
            )?;
            add_released(&mut statement.query([id])?, released)?;
        }
        tx.prepare_cached("DELETE FROM history WHERE channel_id = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM channel WHERE id = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM topic WHERE channel = ?1")?
            .execute([&name])?;
        purged.push(ChannelName::new(&name)?);
    }
    Ok((purged, last_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{self, claim, key, nick};

    fn new_entry(channel: &str, seq: u64, len: usize, time_ms: u64) -> NewEntry {
        NewEntry {
            channel: ChannelName::new(channel).unwrap(),
            entry: Entry {
                seq,
                kind: FrameKind::Binary,
                sender: Uid::new("alice").unwrap(),
                verified: seq % 2 == 1,
                payload: Bytes::from(vec![seq as u8; len]),
                time_ms,
            },
        }
    }

    fn limits(max_entries: usize, max_bytes: u64) -> HistoryLimits {
        HistoryLimits {
            max_entries,
            max_bytes,
        }
    }

    #[tokio::test]
    async fn appended_history_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kanava.db");
        {
            let store = SqliteStore::open(&path, limits(200, 1 << 20)).unwrap();
            store
                .append((1..=3).map(|s| new_entry("c", s, 4, 10)).collect())
                .await
                .unwrap();
        }
        let store = SqliteStore::open(&path, limits(200, 1 << 20)).unwrap();
        let loaded = store.load(ChannelName::new("c").unwrap()).await.unwrap();
        assert_eq!(loaded.next_seq, 4);
        let seqs: Vec<u64> = loaded.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(&loaded.entries[2].payload[..], &[3, 3, 3, 3]);
        assert_eq!(loaded.entries[0].sender.as_str(), "alice");
        assert_eq!(
            loaded
                .entries
                .iter()
                .map(|e| e.verified)
                .collect::<Vec<_>>(),
            loaded
                .entries
                .iter()
                .map(|e| e.seq % 2 == 1)
                .collect::<Vec<_>>(),
            "whether a sender was verified is kept"
        );
    }

    #[tokio::test]
    async fn eviction_matches_the_in_memory_window() {
        let dir = tempfile::tempdir().unwrap();
        let lim = limits(4, 1000);
        let store = SqliteStore::open(&dir.path().join("db"), lim).unwrap();
        let lens = [300usize, 10, 700, 5, 5, 5, 1200, 0, 400, 400, 300];
        let mut window = kanava_core::HistoryWindow::new(lim);
        for (i, len) in lens.iter().enumerate() {
            let e = new_entry("c", i as u64 + 1, *len, 1);
            window.push(std::sync::Arc::new(e.entry.clone()));
            store.append(vec![e]).await.unwrap();
            let loaded = store.load(ChannelName::new("c").unwrap()).await.unwrap();
            let expected: Vec<u64> = window.entries().map(|e| e.seq).collect();
            let got: Vec<u64> = loaded.entries.iter().map(|e| e.seq).collect();
            assert_eq!(got, expected, "after appending entry {}", i + 1);
        }
    }

    #[tokio::test]
    async fn unknown_channel_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), limits(10, 10)).unwrap();
        let loaded = store.load(ChannelName::new("none").unwrap()).await.unwrap();
        assert_eq!(
            loaded,
            StoredChannel {
                entries: vec![],
                next_seq: 1
            }
        );
    }

    /// A fresh store in a temporary directory, which lives as long as the returned guard.
    fn fresh() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), limits(10, 10)).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn names_bind_on_first_use_are_listed_and_released() {
        let (_dir, store) = fresh();
        contract::names_bind_on_first_use_are_listed_and_released(&store, &store).await;
    }

    #[tokio::test]
    async fn names_and_private_messages_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = SqliteStore::open(&path, limits(10, 10)).unwrap();
            claim(&store, "Alice", "SHA256:a").await.unwrap();
            let message = PrivateMessage {
                id: 0,
                from: nick("a"),
                to: nick("Bob"),
                text: "one".into(),
                time_ms: 1_000,
            };
            store.send_private(message, true).await.unwrap();
        }
        let store = SqliteStore::open(&path, limits(10, 10)).unwrap();
        let other = claim(&store, "ALICE", "SHA256:b").await.unwrap();
        assert_eq!(other, Claim::Taken("SHA256:a".into()));
        let bound = store.identity(nick("alice")).await.unwrap().unwrap();
        assert_eq!((bound.nick.as_str(), bound.bound_ms()), ("Alice", 7));
        let unread = store.take_unread_private(nick("bob")).await.unwrap();
        let texts: Vec<&str> = unread.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["one"]);
    }

    #[tokio::test]
    async fn racing_claims_for_one_new_name_have_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), limits(10, 10)).unwrap();
        let claims: Vec<_> = (0..20)
            .map(|i| claim(&store, "bob", &format!("SHA256:{i}")))
            .collect();
        let mut bound = 0;
        for claim in claims {
            if claim.await.unwrap() == Claim::Bound {
                bound += 1;
            }
        }
        assert_eq!(bound, 1);
    }

    #[tokio::test]
    async fn a_key_holds_one_name_unless_sharing_is_on_and_a_name_may_have_several_keys() {
        let (_dir, store) = fresh();
        contract::a_key_holds_one_name_unless_sharing_is_on_and_a_name_may_have_several_keys(
            &store,
        )
        .await;
    }

    #[tokio::test]
    async fn a_pending_key_never_locks_its_holder_out() {
        let (_dir, store) = fresh();
        contract::a_pending_key_never_locks_its_holder_out(&store, &store).await;
    }

    #[tokio::test]
    async fn names_unused_expire() {
        let (_dir, store) = fresh();
        contract::names_unused_expire(&store, &store).await;
    }

    #[tokio::test]
    async fn a_name_is_renamed_with_a_cooldown() {
        let (_dir, store) = fresh();
        contract::a_name_is_renamed_with_a_cooldown(&store, &store).await;
    }

    #[tokio::test]
    async fn a_schema_4_database_gets_pending_keys_and_last_seen_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE identity_key (nick_key TEXT NOT NULL, nick TEXT NOT NULL,
                     fingerprint TEXT NOT NULL, public_key TEXT NOT NULL,
                     added_ms INTEGER NOT NULL, PRIMARY KEY (nick_key, fingerprint)) WITHOUT ROWID;
                 INSERT INTO identity_key VALUES ('eve', 'Eve', 'SHA256:e', 'ssh-ed25519 AAAAe', 5);
                 PRAGMA user_version = 4;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, limits(10, 10)).unwrap();
        let eve = store.identity(nick("eve")).await.unwrap().unwrap();
        assert!(eve.holds("SHA256:e") && eve.last_seen_ms > 5, "{eve:?}");
        let added = store
            .add_key(nick("eve"), key("SHA256:p"), KeySharing::OneNamePerKey)
            .await
            .unwrap();
        assert_eq!(added, KeyAdded::Pending);
        drop(store);
        let store = SqliteStore::open(&path, limits(10, 10)).unwrap();
        let eve = store.identity(nick("eve")).await.unwrap().unwrap();
        assert!(eve.awaits("SHA256:p", 7), "reopened: {eve:?}");
    }

    #[tokio::test]
    async fn a_schema_2_database_keeps_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE identity (nick_key TEXT PRIMARY KEY, nick TEXT NOT NULL,
                     fingerprint TEXT NOT NULL, public_key TEXT NOT NULL,
                     bound_ms INTEGER NOT NULL) WITHOUT ROWID;
                 INSERT INTO identity VALUES ('bob', 'Bob', 'SHA256:b', 'ssh-ed25519 AAAASHA256:b', 5);
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let opened_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let store = SqliteStore::open(&path, limits(10, 10)).unwrap();
        let bob = store.identity(nick("bob")).await.unwrap().unwrap();
        assert_eq!(bob.nick.as_str(), "Bob");
        assert!(
            bob.last_seen_ms >= opened_ms && !bob.keys[0].pending,
            "an existing name counts as seen at the migration, its keys active: {bob:?}"
        );
        assert!(
            store.expire_identities(opened_ms).await.unwrap().is_empty(),
            "so an expiry turned on later does not free it at once"
        );
        assert_eq!(
            bob.keys,
            [IdentityKey {
                added_ms: 5,
                ..key("SHA256:b")
            }]
        );
        drop(store);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let newer = SqliteStore::open(&path, limits(10, 10)).unwrap_err();
        assert!(newer.to_string().contains("schema version"), "{newer}");
    }

    #[tokio::test]
    async fn private_messages_are_unread_until_taken_once() {
        let (_dir, store) = fresh();
        contract::private_messages_are_unread_until_taken_once(&store, &store).await;
    }

    #[tokio::test]
    async fn bans_hold_until_they_end_or_are_lifted() {
        let (_dir, store) = fresh();
        contract::bans_hold_until_they_end_or_are_lifted(&store).await;
    }

    #[tokio::test]
    async fn topics_are_kept_per_room_and_purged_with_it() {
        let (_dir, store) = fresh();
        contract::topics_are_kept_per_room_and_purged_with_it(&store).await;
    }

    #[tokio::test]
    async fn older_history_is_read_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), limits(8, 1000)).unwrap();
        store
            .append((1..=10).map(|s| new_entry("c", s, 1, 1)).collect())
            .await
            .unwrap();
        let page = |before, n| store.history_before(ChannelName::new("c").unwrap(), before, n);
        let seqs = |entries: Vec<Entry>| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(page(8, 3).await.unwrap()), [5, 6, 7]);
        assert_eq!(
            seqs(page(5, 10).await.unwrap()),
            [3, 4],
            "only what retention kept"
        );
        assert!(page(3, 10).await.unwrap().is_empty());
        let unknown = store.history_before(ChannelName::new("x").unwrap(), 9, 9);
        assert!(unknown.await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn purge_removes_idle_channels_except_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), limits(10, 1000)).unwrap();
        store
            .append(vec![new_entry("old", 1, 1, 100)])
            .await
            .unwrap();
        store
            .append(vec![new_entry("kept", 1, 1, 100)])
            .await
            .unwrap();
        store
            .append(vec![new_entry("new", 1, 1, 5000)])
            .await
            .unwrap();
        let purged = store
            .purge_idle(1000, vec![ChannelName::new("kept").unwrap()])
            .await
            .unwrap();
        assert_eq!(purged, [ChannelName::new("old").unwrap()]);
        let old = store.load(ChannelName::new("old").unwrap()).await.unwrap();
        assert!(old.entries.is_empty());
        let kept = store.load(ChannelName::new("kept").unwrap()).await.unwrap();
        assert_eq!(kept.entries.len(), 1);
        // A purged channel can be used again from scratch.
        store
            .append(vec![new_entry("old", 1, 1, 6000)])
            .await
            .unwrap();
        let old = store.load(ChannelName::new("old").unwrap()).await.unwrap();
        assert_eq!(old.next_seq, 2);
    }

    #[tokio::test]
    async fn history_is_charged_to_its_source_and_given_back_when_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(DiskBudget::new(100_000, 25_000, 0));
        let store = SqliteStore::open_with_budget(
            &dir.path().join("db"),
            limits(3, 1 << 20),
            Some(Arc::clone(&disk)),
        )
        .unwrap();
        let a: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let b: Option<IpAddr> = Some("192.0.2.2".parse().unwrap());
        let alice = Uid::new("alice").unwrap();
        let frame = |channel: &str, seq| new_entry(channel, seq, 10_000, 1);
        for seq in 1..=2 {
            store.charge_frame(a, &alice, 10_000).unwrap();
            store.append_from(a, vec![frame("a", seq)]).await.unwrap();
        }
        assert_eq!(
            store.charge_frame(a, &alice, 10_000),
            Err(DiskRefusal::Source),
            "a third frame is past the share"
        );
        store.charge_frame(b, &alice, 10_000).unwrap();
        store.append_from(b, vec![frame("b", 1)]).await.unwrap();
        let one = charge_of(&frame("a", 1));
        assert_eq!(disk.used(), 3 * one);
        store.charge_frame(b, &alice, 10_000).unwrap();
        store.append_from(b, vec![frame("b", 2)]).await.unwrap();
        // Retention keeps 3 entries: the fourth frame in "b" evicts b's first.
        for seq in 3..=4 {
            store.charge_frame(None, &alice, 10_000).unwrap();
            store
                .append_from(None, vec![frame("b", seq)])
                .await
                .unwrap();
        }
        assert_eq!(
            disk.used(),
            5 * one,
            "b's first frame was evicted and given back"
        );
        store.charge_frame(b, &alice, 10_000).unwrap();
        store.append_from(b, vec![frame("b", 5)]).await.unwrap();
        let purged = store.purge_idle(2, vec![]).await.unwrap();
        assert_eq!(purged.len(), 2);
        assert_eq!(disk.used(), 0);
        store.charge_frame(a, &alice, 10_000).unwrap();
    }

    #[tokio::test]
    async fn a_sources_share_is_remembered_when_the_store_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let a: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let alice = Uid::new("alice").unwrap();
        {
            let disk = Arc::new(DiskBudget::new(1 << 20, 25_000, 0));
            let store =
                SqliteStore::open_with_budget(&path, limits(10, 1 << 20), Some(disk)).unwrap();
            for seq in 1..=2 {
                store.charge_frame(a, &alice, 10_000).unwrap();
                store
                    .append_from(a, vec![new_entry("a", seq, 10_000, 1)])
                    .await
                    .unwrap();
            }
        }
        // After a restart the data directory counts under no source, and the store says
        // which part of it is a's.
        let disk = Arc::new(DiskBudget::new(1 << 20, 25_000, 100_000));
        let store = SqliteStore::open_with_budget(&path, limits(10, 1 << 20), Some(disk)).unwrap();
        assert_eq!(
            store.charge_frame(a, &alice, 10_000),
            Err(DiskRefusal::Source),
            "a third frame is still past a's share"
        );
        let b: Option<IpAddr> = Some("192.0.2.2".parse().unwrap());
        store.charge_frame(b, &alice, 10_000).unwrap();
    }

    #[tokio::test]
    async fn purged_space_goes_back_to_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = SqliteStore::open(&path, limits(1000, 1 << 30)).unwrap();
        for channel in 0..40 {
            let entries = (1..=8)
                .map(|seq| new_entry(&format!("c{channel}"), seq, 32 * 1024, 1))
                .collect();
            store.append(entries).await.unwrap();
        }
        store.sync().await.unwrap();
        let size = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum::<u64>()
        };
        let full = size();
        assert!(full > 10 << 20, "{full}");
        let purged = store.purge_idle(2, vec![]).await.unwrap();
        assert_eq!(purged.len(), 40);
        store.sync().await.unwrap();
        let after = size();
        assert!(
            after < 1 << 20,
            "{full} bytes before the purge, {after} after"
        );
    }

    #[tokio::test]
    async fn a_schema_3_database_gets_sources_and_incremental_vacuum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE channel (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                     last_seq INTEGER NOT NULL, last_activity_ms INTEGER NOT NULL);
                 CREATE TABLE history (channel_id INTEGER NOT NULL, seq INTEGER NOT NULL,
                     kind INTEGER NOT NULL, sender TEXT NOT NULL, time_ms INTEGER NOT NULL,
                     payload BLOB NOT NULL, PRIMARY KEY (channel_id, seq)) WITHOUT ROWID;
                 INSERT INTO channel VALUES (1, 'c', 1, 5);
                 INSERT INTO history VALUES (1, 1, 1, 'alice', 5, x'6869');
                 PRAGMA user_version = 3;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, limits(10, 1000)).unwrap();
        store.append(vec![new_entry("c", 2, 1, 6)]).await.unwrap();
        let loaded = store.load(ChannelName::new("c").unwrap()).await.unwrap();
        assert_eq!(loaded.entries.len(), 2);
        assert_eq!(&loaded.entries[0].payload[..], b"hi");
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let mode: i64 = conn
            .pragma_query_value(None, "auto_vacuum", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, 2, "incremental");
    }

    /// A store in `dir` holding channels `c0` … of one entry each, idle since time 100.
    async fn idle_channels(dir: &Path, count: usize) -> SqliteStore {
        let store = SqliteStore::open(&dir.join("db"), limits(10, 1000)).unwrap();
        store
            .append(
                (0..count)
                    .map(|i| new_entry(&format!("c{i}"), 1, 1, 100))
                    .collect(),
            )
            .await
            .unwrap();
        store
    }

    #[tokio::test]
    async fn a_purge_of_many_channels_commits_in_chunks_and_misses_none() {
        let dir = tempfile::tempdir().unwrap();
        let count = PURGE_CHUNK * 2 + 7;
        let store = idle_channels(dir.path(), count).await;
        let kept = ChannelName::new(&format!("c{}", PURGE_CHUNK + 3)).unwrap();
        let purged = store.purge_idle(1000, vec![kept.clone()]).await.unwrap();
        assert_eq!(purged.len(), count - 1);
        assert!(!purged.contains(&kept));
        assert_eq!(store.load(kept).await.unwrap().entries.len(), 1);
        let gone = store.load(ChannelName::new("c0").unwrap()).await.unwrap();
        assert!(gone.entries.is_empty());
    }

    #[tokio::test]
    async fn other_requests_are_served_while_a_purge_runs_and_a_channel_loaded_meanwhile_stays() {
        let dir = tempfile::tempdir().unwrap();
        let count = PURGE_CHUNK * 20;
        let store = idle_channels(dir.path(), count).await;
        let purge = store.purge_idle(1000, Vec::new());
        // Queued behind the purge: answered between its chunks, not after all of them.
        store
            .append(vec![new_entry("live", 1, 1, 5000)])
            .await
            .unwrap();
        let joined = ChannelName::new(&format!("c{}", count - 1)).unwrap();
        let loaded = store.load(joined.clone()).await.unwrap();
        assert_eq!(
            loaded.entries.len(),
            1,
            "loaded before the purge reached it"
        );
        let purged = purge.await.unwrap();
        assert_eq!(purged.len(), count - 1);
        assert!(!purged.contains(&joined), "joined during the purge: kept");
        assert_eq!(store.load(joined).await.unwrap().entries.len(), 1);
        let live = store.load(ChannelName::new("live").unwrap()).await.unwrap();
        assert_eq!(live.entries.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_batch_reports_errors_and_the_store_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), limits(10, 1000)).unwrap();
        store.append(vec![new_entry("c", 1, 1, 1)]).await.unwrap();
        // Reusing a sequence number violates the primary key: the append fails.
        assert!(store.append(vec![new_entry("c", 1, 1, 1)]).await.is_err());
        store.append(vec![new_entry("c", 2, 1, 1)]).await.unwrap();
        let loaded = store.load(ChannelName::new("c").unwrap()).await.unwrap();
        assert_eq!(loaded.entries.len(), 2);
    }

    /// What a database at `path` counts for channel `name` and what its history really holds:
    /// `(kept_entries, kept_bytes)` (None if not counted yet) and `(rows, payload bytes)`.
    #[allow(clippy::type_complexity)]
    fn counted_and_held(path: &Path, name: &str) -> ((Option<i64>, Option<i64>), (i64, i64)) {
        let conn = Connection::open(path).unwrap();
        conn.query_row(
            "SELECT kept_entries, kept_bytes,
                    (SELECT count(*) FROM history WHERE channel_id = channel.id),
                    (SELECT coalesce(sum(length(payload)), 0) FROM history
                     WHERE channel_id = channel.id)
             FROM channel WHERE name = ?1",
            [name],
            |row| Ok(((row.get(0)?, row.get(1)?), (row.get(2)?, row.get(3)?))),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn retention_holds_at_both_caps_after_many_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let lim = limits(300, 20_000);
        let store = SqliteStore::open(&path, lim).unwrap();
        let mut window = kanava_core::HistoryWindow::new(lim);
        // Lengths from a fixed linear congruential sequence: short frames in the first half,
        // so that the entry cap binds, then longer ones, so that the byte cap binds, with now
        // and then one frame larger than the whole byte cap.
        let mut state = 7u64;
        let mut next_len = |round: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            match (state >> 33) % 100 {
                _ if round < 150 => (state >> 40) as usize % 20,
                0 => 25_000,
                _ => (state >> 40) as usize % 400,
            }
        };
        let mut seq = 0u64;
        let mut at_entry_cap = false;
        let mut at_byte_cap = false;
        for round in 0..300 {
            // Several appends in flight at once share one transaction; each of them may
            // carry several frames.
            let mut pending = Vec::new();
            for _ in 0..(round % 4 + 1) {
                let frames: Vec<NewEntry> = (0..(round % 5 + 1))
                    .map(|_| {
                        seq += 1;
                        new_entry("c", seq, next_len(round), seq)
                    })
                    .collect();
                for frame in &frames {
                    window.push(Arc::new(frame.entry.clone()));
                }
                pending.push(store.append(frames));
            }
            for append in pending {
                append.await.unwrap();
            }
            let loaded = store.load(ChannelName::new("c").unwrap()).await.unwrap();
            let expected: Vec<u64> = window.entries().map(|e| e.seq).collect();
            let got: Vec<u64> = loaded.entries.iter().map(|e| e.seq).collect();
            assert_eq!(got, expected, "after round {round}");
            let bytes: u64 = loaded.entries.iter().map(|e| e.payload.len() as u64).sum();
            assert!(loaded.entries.len() <= 300 && bytes <= 20_000);
            at_entry_cap |= loaded.entries.len() == 300;
            at_byte_cap |= bytes > 20_000 - 400;
        }
        assert!(
            at_entry_cap && at_byte_cap,
            "both caps were reached: {at_entry_cap} {at_byte_cap}"
        );
        let (counted, held) = counted_and_held(&path, "c");
        assert_eq!(
            counted,
            (Some(held.0), Some(held.1)),
            "the counters match the history"
        );
        assert_eq!(held.0 as usize, window.len());
        assert_eq!(held.1 as u64, window.bytes());
    }

    /// A connection to a fresh in-memory database holding channel 1 filled to `limits` with
    /// 100-byte frames through the store's own insert and eviction.
    fn full_channel(limits: HistoryLimits, frames: u64) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        let tx = conn.transaction().unwrap();
        let id = channel_id(&tx, &mut HashMap::new(), &ChannelName::new("c").unwrap(), 1).unwrap();
        assert_eq!(id, 1);
        for seq in 1..=frames {
            insert(&tx, 1, &new_entry("c", seq, 100, seq).entry, None, 0).unwrap();
        }
        evict(&tx, 1, limits, &mut Released::new()).unwrap();
        tx.commit().unwrap();
        conn
    }

    /// SQLite virtual machine instructions run to append frame `seq` to channel 1 and apply
    /// retention, with the rows and bytes kept afterwards.
    fn work_of_one_append(conn: &mut Connection, limits: HistoryLimits, seq: u64) -> (u64, i64) {
        let steps = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&steps);
        conn.progress_handler(
            1,
            Some(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                false
            }),
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        insert(&tx, 1, &new_entry("c", seq, 100, seq).entry, None, 0).unwrap();
        evict(&tx, 1, limits, &mut Released::new()).unwrap();
        tx.commit().unwrap();
        conn.progress_handler(0, None::<fn() -> bool>).unwrap();
        let kept: i64 = conn
            .query_row("SELECT count(*) FROM history", [], |row| row.get(0))
            .unwrap();
        (steps.load(std::sync::atomic::Ordering::Relaxed), kept)
    }

    #[test]
    fn the_work_of_an_append_at_a_full_channel_does_not_grow_with_the_limits() {
        // Bound by entries (`--history-limit`), then by bytes: 200 and 100,000 frames.
        let cases = |frames: usize| {
            [
                limits(frames, u64::MAX),
                limits(usize::MAX, frames as u64 * 100),
            ]
        };
        for (small, large) in cases(200).into_iter().zip(cases(100_000)) {
            let mut measured = Vec::new();
            for (lim, frames) in [(small, 200u64), (large, 100_000)] {
                let mut conn = full_channel(lim, frames);
                // The first append evicts one frame, as does every later one.
                let (steps, kept) = work_of_one_append(&mut conn, lim, frames + 1);
                assert_eq!(kept as u64, frames, "{lim:?}");
                let (again, kept) = work_of_one_append(&mut conn, lim, frames + 2);
                assert_eq!(kept as u64, frames, "{lim:?}");
                measured.push(steps.max(again));
            }
            assert!(
                measured[1] < measured[0] * 2,
                "an append at 100,000 frames ran {} instructions, at 200 frames {}",
                measured[1],
                measured[0]
            );
        }
    }

    #[test]
    fn retention_reads_the_history_through_its_primary_key() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        for sql in [KEPT, COUNT, OLDEST, DELETE_OLDEST] {
            let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let bound = explain.parameter_count();
            let plan: Vec<String> = explain
                .query_map(rusqlite::params_from_iter(vec![1i64; bound]), |row| {
                    row.get::<_, String>(3)
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(!plan.is_empty(), "{sql}");
            for step in &plan {
                assert!(
                    step.starts_with("SEARCH") && !step.contains("TEMP B-TREE"),
                    "{sql}: {plan:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_schema_5_database_counts_its_history_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE channel (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                     last_seq INTEGER NOT NULL, last_activity_ms INTEGER NOT NULL);
                 CREATE TABLE history (channel_id INTEGER NOT NULL, seq INTEGER NOT NULL,
                     kind INTEGER NOT NULL, sender TEXT NOT NULL, time_ms INTEGER NOT NULL,
                     payload BLOB NOT NULL, source TEXT, charged INTEGER NOT NULL DEFAULT 0,
                     verified INTEGER NOT NULL DEFAULT 0,
                     PRIMARY KEY (channel_id, seq)) WITHOUT ROWID;
                 INSERT INTO channel VALUES (1, 'a', 5, 5), (2, 'b', 2, 5), (3, 'empty', 0, 5);
                 INSERT INTO history VALUES
                     (1, 1, 1, 'alice', 1, x'01', NULL, 0, 0),
                     (1, 2, 1, 'alice', 2, x'0202', NULL, 0, 0),
                     (1, 3, 1, 'alice', 3, x'030303', NULL, 0, 0),
                     (1, 4, 1, 'alice', 4, x'04', NULL, 0, 0),
                     (1, 5, 1, 'alice', 5, x'05', NULL, 0, 1),
                     (2, 1, 1, 'bob', 1, x'0101', NULL, 0, 0),
                     (2, 2, 1, 'bob', 2, x'02', NULL, 0, 0);
                 PRAGMA user_version = 5;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, limits(4, 1000)).unwrap();
        // Opening counts nothing: each channel is counted when it is next appended to.
        assert_eq!(counted_and_held(&path, "a"), ((None, None), (5, 8)));
        assert_eq!(counted_and_held(&path, "b"), ((None, None), (2, 3)));
        assert_eq!(counted_and_held(&path, "empty"), ((None, None), (0, 0)));
        let a = store.load(ChannelName::new("a").unwrap()).await.unwrap();
        let seqs: Vec<u64> = a.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5], "the history is intact");
        assert_eq!(&a.entries[2].payload[..], &[3, 3, 3]);
        assert!(a.entries[4].verified && a.next_seq == 6);
        // The next append applies the limits as before: four entries remain.
        store.append(vec![new_entry("a", 6, 2, 6)]).await.unwrap();
        let a = store.load(ChannelName::new("a").unwrap()).await.unwrap();
        let seqs: Vec<u64> = a.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5, 6]);
        assert_eq!(counted_and_held(&path, "a"), ((Some(4), Some(7)), (4, 7)));
        store.append(vec![new_entry("b", 3, 1, 6)]).await.unwrap();
        assert_eq!(counted_and_held(&path, "b"), ((Some(3), Some(4)), (3, 4)));
        store
            .append(vec![new_entry("empty", 1, 5, 6)])
            .await
            .unwrap();
        assert_eq!(
            counted_and_held(&path, "empty"),
            ((Some(1), Some(5)), (1, 5))
        );
        let b = store.load(ChannelName::new("b").unwrap()).await.unwrap();
        let seqs: Vec<u64> = b.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }
}
