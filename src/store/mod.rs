//! The embedded crash-safe store: consultations, refresh-token rotation state and revocations
//! in the redb file `consult-edge.redb`, messages in the log `messages.log`, both in the data dir.
//!
//! # Invariants
//! 1. One writer thread owns every write (see [`writer`]); reads run on the caller's thread (a
//!    redb read transaction, or the log index and a positional read) and never see a
//!    half-applied batch.
//! 2. A write call returns `Ok` only after its batch is committed durably: after `kill -9` and a
//!    reopen, everything acknowledged is there (SPEC §6).
//! 3. Seqs are per consultation, dense, from 1; (consultation, from, client_id) is stored at
//!    most once (see [`tables`]).
//! 4. When the last [`Store`] handle is dropped (or [`Store::shutdown`] completes), every queued
//!    op has been committed or answered and the file is closed.
//! 5. The store knows no HTTP, WebSocket, JWT or scope: it deals in plain records and ids.
//!
//! # Implementation
//! [`Store`] is an `Arc` around the shared `redb::Database`, the message log and its index
//! ([`msglog`], [`index`]: why messages are not in redb is explained there), the sending half of
//! the writer's op queue and the writer's counters; cloning it is cheap and it is `Send + Sync`, because the
//! writer is a real other thread. Write methods are `async`: they enqueue an op and await its
//! reply, so the single-threaded executor never blocks on an fsync. Read methods are plain
//! functions (a read is a few B-tree lookups in the page cache); a caller that reads a lot
//! offloads them with `smol::unblock`.
//!
//! The file is opened with redb's integrity check, so a damaged or foreign file is reported as
//! [`StoreError::Corrupt`] instead of being trusted (a plain open may panic on such a file). The
//! check reads the whole file once per start; that is the price of never panicking on it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), consult_edge::store::StoreError> {
//! use consult_edge::store::{NewMessage, Store};
//! let store = Store::open(std::path::Path::new("./data"))?;
//! let c = store.create_consultation("p1", "d1", 1_700_000_000_000).await?;
//! let sent = store
//!     .append_message(NewMessage {
//!         consultation: c.id.clone(),
//!         from: "p1".into(),
//!         role: "patient".into(),
//!         body: "hello".into(),
//!         client_id: "c-1".into(),
//!         ts_ms: 1_700_000_000_100,
//!         traceparent: String::new(),
//!     })
//!     .await?;
//! assert_eq!(sent.message.seq, 1);
//! store.shutdown().await;
//! # Ok(()) }
//! ```

mod append;
mod crc32;
mod cursors;
mod error;
mod index;
mod linger;
mod log_record;
mod msglog;
mod records;
mod reply;
mod tables;
mod writer;

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use redb::{Database, ReadTransaction, ReadableDatabase};

pub use error::StoreError;
pub use msglog::LOG_FILE_NAME;
pub use records::{
    Appended, ConsultState, Consultation, NewMessage, PurgeCount, RefreshUse, StoredMessage,
    ID_BYTES,
};
pub use tables::MAX_PURGE_PER_CALL;
pub use writer::{MAX_BATCH, QUEUE_CAPACITY};

/// Name of the database file inside the data dir.
pub const FILE_NAME: &str = "consult-edge.redb";

/// redb page-cache ceiling. redb holds consultations, used refresh tokens and revocations (the
/// messages are in the log): small records, read on create, join and close, not per message.
/// A kiosk gateway has a few hundred MiB in all; re-reads past the cache come from the OS page
/// cache. (redb's own default, 1 GiB, is meant for servers.)
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Mode of a data dir the store creates: it holds medical conversations, owner only.
const DIR_MODE: u32 = 0o700;
/// Mode of a database file the store creates: owner read/write only, for the same reason.
const FILE_MODE: u32 = 0o600;

/// Counters of the writer since open, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Successful commits (each one fsync).
    pub commits: u64,
    /// Ops answered by a successful commit; `ops_committed / commits` is the mean batch size.
    pub ops_committed: u64,
    /// Batches rolled back: their ops all got an error.
    pub failed_batches: u64,
    /// Time spent in successful commits, microseconds in total.
    pub commit_micros_total: u64,
    /// Longest successful commit, microseconds.
    pub commit_micros_max: u64,
}

/// A handle on the open store. Cheap to clone; all clones share one file and one writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// The open database; the writer holds the other reference and is its only writer.
    db: Arc<Database>,
    /// The message log, for positional reads; the writer appends to it.
    log: Arc<msglog::MessageLog>,
    /// Where each committed message is in the log; the writer publishes after each commit.
    index: Arc<RwLock<index::MessageIndex>>,
    /// Sending half of the writer's op queue. Closed by `shutdown` or the last drop; the writer
    /// then drains what is queued and exits.
    ops: async_channel::Sender<writer::Op>,
    /// Counters and the fault-injection switch, shared with the writer.
    shared: Arc<writer::WriterShared>,
    /// Becomes closed (recv errors) when the writer thread has finished its last batch.
    writer_done: async_channel::Receiver<()>,
    /// The writer thread; `None` once joined.
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    /// Invariant 4: close the queue, let the writer commit what is queued, wait for it. Blocks
    /// for at most the batches already queued; call [`Store::shutdown`] to wait asynchronously.
    fn drop(&mut self) {
        self.ops.close();
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                log::error!("event=store_writer_panicked");
            }
        }
    }
}

impl Store {
    /// Opens (creating if absent) `dir/consult-edge.redb` and starts the writer thread.
    ///
    /// A file that is not a redb database, is truncated or is damaged gives
    /// [`StoreError::Corrupt`]; a file already opened by another process gives
    /// [`StoreError::Io`].
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(dir, CACHE_BYTES)
    }

    /// [`Store::open`] with a page-cache ceiling of `cache_bytes` instead of [`CACHE_BYTES`].
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| StoreError::Io(format!("create dir {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        // Create it ourselves with a private mode; redb initialises an empty file as new.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|e| StoreError::Io(format!("open {}: {e}", path.display())))?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .set_check_integrity_on_open(true)
            .create(&path)
            .map_err(open_error)?;
        let init = db.begin_write()?;
        tables::create_all(&init)?;
        init.commit()?;
        let recovered = msglog::MessageLog::open(dir, FILE_MODE)?;
        log::info!(
            "event=message_log_open messages={} bytes={}",
            recovered.index.total(),
            recovered.end
        );

        let db = Arc::new(db);
        let log = Arc::new(recovered.log);
        let index = Arc::new(RwLock::new(recovered.index));
        let appender = append::Appender::new(
            Arc::clone(&db),
            Arc::clone(&log),
            Arc::clone(&index),
            recovered.end,
        );
        let shared = Arc::new(writer::WriterShared::default());
        let (ops_tx, ops_rx) = async_channel::bounded(QUEUE_CAPACITY);
        let (done_tx, done_rx) = async_channel::bounded::<()>(1);
        let writer = {
            let db = Arc::clone(&db);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("store-writer".to_owned())
                .spawn(move || {
                    writer::run(db, appender, ops_rx, shared);
                    // The database reference is dropped above; only then report done.
                    drop(done_tx);
                })
                .map_err(|e| StoreError::Io(format!("spawn writer: {e}")))?
        };
        log::info!("event=store_open path={}", path.display());
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                log,
                index,
                ops: ops_tx,
                shared,
                writer_done: done_rx,
                writer: Some(writer),
            }),
        })
    }

    /// Stops taking writes (later write calls on any clone get [`StoreError::Stopped`]) and waits,
    /// without blocking the executor, until the writer has committed every queued op and exited.
    /// The file closes when the last clone is dropped.
    pub async fn shutdown(self) {
        self.inner.ops.close();
        // Errors once the writer dropped its end: that is the signal.
        let _ = self.inner.writer_done.recv().await;
    }

    // -----------------------------------------------------------------------------------------
    // Writes: group-committed by the writer thread.
    // -----------------------------------------------------------------------------------------

    async fn call<T>(
        &self,
        op: impl FnOnce(writer::Reply<T>) -> writer::Op,
    ) -> Result<T, StoreError> {
        let (reply, answer) = reply::reply_slot();
        self.inner
            .ops
            .send(op(reply))
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.ok_or(StoreError::Stopped)?
    }

    /// Creates an open consultation with a fresh unguessable id, `last_seq` 0.
    pub async fn create_consultation(
        &self,
        patient: &str,
        doctor: &str,
        now_ms: u64,
    ) -> Result<Consultation, StoreError> {
        let (patient, doctor) = (patient.to_owned(), doctor.to_owned());
        self.call(|reply| writer::Op::Create {
            patient,
            doctor,
            now_ms,
            reply,
        })
        .await
    }

    /// Stores a message with the next seq, or returns the original one (`duplicate: true`) if
    /// (consultation, from, client_id) was stored before — also after the consultation closed,
    /// since it was accepted while open. [`StoreError::NotFound`] if the consultation does not
    /// exist, [`StoreError::Closed`] if it is closed.
    pub async fn append_message(&self, message: NewMessage) -> Result<Appended, StoreError> {
        self.begin_append(message).await?.wait().await
    }

    /// The first half of [`Store::append_message`]: queues the append and returns once it is
    /// queued (waiting only while the writer's queue is full). Appends queued one after another
    /// by one task are applied in that order, so a socket can keep several sends in flight and
    /// still get its seqs and acks in send order. The op commits even if the ticket is dropped.
    pub async fn begin_append(&self, message: NewMessage) -> Result<PendingAppend, StoreError> {
        let (reply, answer) = reply::reply_slot();
        self.inner
            .ops
            .send(writer::Op::Append { message, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        Ok(PendingAppend { answer })
    }

    /// [`Store::begin_append`] without waiting: `Ok(None)` when the writer's queue is full (the
    /// message is not queued; the caller falls back to `begin_append`, which waits). The
    /// common case of the send path, with no future to hold.
    pub fn try_begin_append(
        &self,
        message: NewMessage,
    ) -> Result<Option<PendingAppend>, StoreError> {
        let (reply, answer) = reply::reply_slot();
        match self
            .inner
            .ops
            .try_send(writer::Op::Append { message, reply })
        {
            Ok(()) => Ok(Some(PendingAppend { answer })),
            Err(async_channel::TrySendError::Full(_)) => Ok(None),
            Err(async_channel::TrySendError::Closed(_)) => Err(StoreError::Stopped),
        }
    }

    /// Closes a consultation with `reason`; closing a closed one returns it unchanged.
    pub async fn close_consultation(
        &self,
        id: &str,
        reason: &str,
        now_ms: u64,
    ) -> Result<Consultation, StoreError> {
        let (id, reason) = (id.to_owned(), reason.to_owned());
        self.call(|reply| writer::Op::Close {
            id,
            reason,
            now_ms,
            reply,
        })
        .await
    }

    /// Records a refresh token's `jti` as used: `Fresh` the first time, `Reused` ever after
    /// (until purged once `exp_unix` has passed, when the token is invalid anyway).
    pub async fn use_refresh(
        &self,
        jti: &str,
        sid: &str,
        exp_unix: u64,
    ) -> Result<RefreshUse, StoreError> {
        let (jti, sid) = (jti.to_owned(), sid.to_owned());
        self.call(|reply| writer::Op::UseRefresh {
            jti,
            sid,
            exp_unix,
            reply,
        })
        .await
    }

    /// Revokes a login session until `until_unix`; an existing revocation keeps the later time.
    pub async fn revoke_sid(&self, sid: &str, until_unix: u64) -> Result<(), StoreError> {
        let sid = sid.to_owned();
        self.call(|reply| writer::Op::Revoke {
            sid,
            until_unix,
            reply,
        })
        .await
    }

    /// Removes revocations and used refresh jtis whose time is before `now_unix`, at most
    /// [`MAX_PURGE_PER_CALL`] of each per call.
    pub async fn purge_expired(&self, now_unix: u64) -> Result<PurgeCount, StoreError> {
        self.call(|reply| writer::Op::Purge { now_unix, reply })
            .await
    }

    // -----------------------------------------------------------------------------------------
    // Reads: on the caller's thread, each on its own snapshot.
    // -----------------------------------------------------------------------------------------

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.inner.db.begin_read()?)
    }

    /// `last_seq` and `last_message_at_ms` of records read from redb, from the log index.
    fn filled(&self, mut records: Vec<Consultation>) -> Vec<Consultation> {
        let index = append::read_index(&self.inner.index);
        for c in &mut records {
            index.fill(c);
        }
        records
    }

    /// The consultation with this id, if any.
    pub fn consultation(&self, id: &str) -> Result<Option<Consultation>, StoreError> {
        let record = tables::consultation(&self.read()?, id)?;
        Ok(record.map(|mut c| {
            append::read_index(&self.inner.index).fill(&mut c);
            c
        }))
    }

    /// The consultations where `user` is patient or doctor, newest first (by creation time, then
    /// id), at most `limit`.
    pub fn consultations_of(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<Consultation>, StoreError> {
        Ok(self.filled(tables::consultations_of(&self.read()?, user, limit)?))
    }

    /// Every open consultation, to restore their deadlines at start.
    pub fn open_consultations(&self) -> Result<Vec<Consultation>, StoreError> {
        Ok(self.filled(tables::open_consultations(&self.read()?)?))
    }

    /// Messages of `consultation` with seq > `after_seq`, ascending, at most `limit`.
    pub fn messages_after(
        &self,
        consultation: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let locations = append::read_index(&self.inner.index).after(consultation, after_seq, limit);
        locations
            .into_iter()
            .map(|(_, loc)| self.inner.log.read(loc))
            .collect()
    }

    /// Every stored revocation as (sid, until unix s), to load into memory at start.
    pub fn revocations(&self) -> Result<Vec<(String, u64)>, StoreError> {
        tables::revocations(&self.read()?)
    }

    /// Whether this refresh `jti` is recorded as used (and not yet purged).
    pub fn is_refresh_used(&self, jti: &str) -> Result<bool, StoreError> {
        tables::refresh_used(&self.read()?, jti)
    }

    // -----------------------------------------------------------------------------------------
    // Observability and test hooks.
    // -----------------------------------------------------------------------------------------

    /// Successful commits since open (each one fsync). Fewer than the write ops means grouping.
    pub fn commits(&self) -> u64 {
        self.inner.shared.commits.load(Ordering::Relaxed)
    }

    /// The writer's counters since open.
    pub fn stats(&self) -> StoreStats {
        let s = &self.inner.shared;
        StoreStats {
            commits: s.commits.load(Ordering::Relaxed),
            ops_committed: s.ops_committed.load(Ordering::Relaxed),
            failed_batches: s.failed_batches.load(Ordering::Relaxed),
            commit_micros_total: s.commit_micros_total.load(Ordering::Relaxed),
            commit_micros_max: s.commit_micros_max.load(Ordering::Relaxed),
        }
    }

    /// TEST HOOK (fault injection, issue "store faults"): while `on`, the writer aborts every
    /// batch instead of committing it and answers each of its ops with [`StoreError::Io`], as a
    /// failing disk would. Nothing of those batches becomes visible. Not for production use.
    pub fn set_fail_commits(&self, on: bool) {
        self.inner.shared.fail_commits.store(on, Ordering::Relaxed);
    }

    /// Ops waiting in the writer's queue (not yet taken into a batch).
    pub fn queued_ops(&self) -> usize {
        self.inner.ops.len()
    }

    /// TEST HOOK (backpressure): while `on`, the writer keeps the op it has taken and takes no
    /// other, so the queue fills to [`QUEUE_CAPACITY`] and callers meet the full
    /// queue; `false` lets it commit everything queued, in order. Not for production use.
    pub fn hold_writer(&self, on: bool) {
        let shared = &self.inner.shared;
        *shared
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = on;
        shared.released.notify_all();
    }
}

/// A queued append (see [`Store::begin_append`]): a future of its outcome once its batch has
/// committed, the same outcome as [`Store::append_message`]. Not boxed, no allocation of its own.
#[derive(Debug)]
pub struct PendingAppend {
    answer: reply::ReplyRx<Result<Appended, StoreError>>,
}

impl PendingAppend {
    /// Waits for the append's batch to commit.
    pub async fn wait(self) -> Result<Appended, StoreError> {
        self.await
    }
}

impl std::future::Future for PendingAppend {
    type Output = Result<Appended, StoreError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.answer)
            .poll(cx)
            .map(|answer| answer.ok_or(StoreError::Stopped)?)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The writer is a real other thread: handles must cross threads (and `smol::unblock`).
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
};

/// Open errors: anything about the file's contents is `Corrupt`; a second open is `Io`.
fn open_error(e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ) =>
        {
            StoreError::Corrupt(format!("unreadable file: {io}"))
        }
        redb::DatabaseError::RepairAborted => StoreError::Corrupt("repair aborted".to_owned()),
        other => StoreError::from(other),
    }
}
