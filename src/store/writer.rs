//! The writer thread: the only code that writes the file, one group commit per batch.
//!
//! # Invariants
//! 1. Exactly one thread calls `begin_write`, so ops apply in queue order and a batch never
//!    waits on a lock.
//! 2. A batch holds 1..=[`MAX_BATCH`] ops and at most about [`BATCH_LOG_BYTES`] of messages.
//!    Its redb ops (consultations, tokens, revocations) are applied in one write transaction,
//!    committed first; its messages are then written to the message log with one write and one
//!    fdatasync. Every op gets its reply only after that: an `Ok` reply means the op is durable.
//! 3. If the redb commit (or an `Io` error inside any op) fails, nothing of the batch is
//!    visible and every op is answered with that error. If only the log write fails, the
//!    batch's messages are answered with that error and are not visible; its redb ops stand
//!    (they are independent of the messages: a close or a create commits on its own).
//! 4. The thread exits only when the op queue is closed and empty: queued ops are never dropped.
//!
//! # Implementation
//! The thread blocks on the queue for the first op, then takes whatever else is already queued
//! (bounded as above): under load many callers' ops share one fsync, when idle a lone op is
//! committed at once (no added latency). Under a sustained rate or a burst, the batch then
//! waits once, briefly, for more (`linger.rs`). The redb transaction is begun only if the
//! batch has a redb op, so a batch of messages costs one write and one fdatasync. Each op
//! carries its own one-shot reply slot (`reply.rs`); a caller that stopped waiting simply never reads
//! its reply, and its op still commits. When a commit leaves the queue empty, the thread
//! extends the message log's pre-written tail (`msglog.rs`, invariant 4) before it blocks again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use redb::{Database, WriteTransaction};

use super::append::{Appender, LogBatch};
use super::linger::Linger;
use super::msglog::BATCH_LOG_BYTES;
use super::records::{Appended, Consultation, NewMessage, PurgeCount, RefreshUse};
use super::{tables, StoreError};

/// Most ops in one write transaction. Bounds the time a batch holds its callers (one commit of
/// at most this many small records) and the memory of one transaction; 256 sends is far above
/// what one kiosk gateway queues between two fsyncs, so grouping is never starved by it.
pub const MAX_BATCH: usize = 256;

/// Ops that may wait in the queue before callers are made to wait to enqueue (backpressure):
/// four full batches, so the next batches are already waiting while one commits.
pub const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

/// Where a write op's result goes: the caller's one-shot reply slot.
pub(crate) type Reply<T> = super::reply::ReplyTx<Result<T, StoreError>>;

/// One write request, with the channel its caller is waiting on.
pub(crate) enum Op {
    Create {
        patient: String,
        doctor: String,
        now_ms: u64,
        reply: Reply<Consultation>,
    },
    Append {
        message: NewMessage,
        reply: Reply<Appended>,
    },
    Close {
        id: String,
        reason: String,
        now_ms: u64,
        reply: Reply<Consultation>,
    },
    UseRefresh {
        jti: String,
        sid: String,
        exp_unix: u64,
        reply: Reply<RefreshUse>,
    },
    Revoke {
        sid: String,
        until_unix: u64,
        reply: Reply<()>,
    },
    Purge {
        now_unix: u64,
        reply: Reply<PurgeCount>,
    },
}

/// Counters and switches shared between the writer and every `Store` handle.
#[derive(Debug, Default)]
pub(crate) struct WriterShared {
    /// Test hook: while `true`, every batch is aborted instead of committed (invariant 3).
    pub fail_commits: AtomicBool,
    /// Test hook: while `true`, the writer holds the op it just took and takes no other, so
    /// the queue fills (backpressure tests). Checked once per batch.
    pub held: std::sync::Mutex<bool>,
    /// Wakes the writer when `held` goes back to `false`.
    pub released: std::sync::Condvar,
    /// Successful commits since open.
    pub commits: AtomicU64,
    /// Ops answered by a successful commit since open.
    pub ops_committed: AtomicU64,
    /// Batches rolled back (commit failure, `Io` inside an op, or the test hook).
    pub failed_batches: AtomicU64,
    /// Sum of the time spent in successful `commit` calls, in microseconds.
    pub commit_micros_total: AtomicU64,
    /// Longest single successful `commit`, in microseconds.
    pub commit_micros_max: AtomicU64,
}

/// An applied op waiting for its batch's commit to answer its caller: one variant per reply
/// type, held by value. A boxed trait object cost one allocation per op, so per message.
enum Staged {
    Append(Pending<Appended>),
    Consultation(Pending<Consultation>),
    Refresh(Pending<RefreshUse>),
    Revoke(Pending<()>),
    Purge(Pending<PurgeCount>),
}

/// Runs `$body` with `$pending` bound to whichever [`Pending`] a [`Staged`] holds.
macro_rules! with_pending {
    ($staged:expr, $pending:ident => $body:expr) => {
        match $staged {
            Staged::Append($pending) => $body,
            Staged::Consultation($pending) => $body,
            Staged::Refresh($pending) => $body,
            Staged::Revoke($pending) => $body,
            Staged::Purge($pending) => $body,
        }
    };
}

impl Staged {
    /// The `Io` error that poisons the batch, if this op hit one.
    fn fatal(&self) -> Option<StoreError> {
        with_pending!(self, pending => pending.fatal())
    }

    /// Whether the op's outcome depends on the message log write (an append).
    fn uses_log(&self) -> bool {
        with_pending!(self, pending => pending.uses_log)
    }

    /// Answers the caller: the op's own outcome if its part of the batch committed, else that
    /// part's error.
    fn deliver(self, committed: &Result<(), StoreError>) {
        with_pending!(self, pending => pending.deliver(committed))
    }
}

struct Pending<T> {
    reply: Reply<T>,
    outcome: Result<T, StoreError>,
    uses_log: bool,
}

impl<T> Pending<T> {
    fn fatal(&self) -> Option<StoreError> {
        match &self.outcome {
            // An append stages nothing unless it succeeds, so its errors fail it alone.
            Err(e @ StoreError::Io(_)) if !self.uses_log => Some(e.clone()),
            _ => None,
        }
    }

    fn deliver(self, committed: &Result<(), StoreError>) {
        let answer = match committed {
            Ok(()) => self.outcome,
            Err(e) => Err(e.clone()),
        };
        // A caller that stopped waiting never reads it; the op committed all the same.
        self.reply.send(answer);
    }
}

/// An op's outcome that does not depend on the message log write.
fn pending<T>(reply: Reply<T>, outcome: Result<T, StoreError>) -> Pending<T> {
    Pending {
        reply,
        outcome,
        uses_log: false,
    }
}

/// One batch being applied.
struct Batch<'a> {
    db: &'a Database,
    /// Begun at the first redb op of the batch.
    txn: Option<WriteTransaction>,
    log: &'a mut LogBatch,
    /// Emptied by the commit; the writer keeps its capacity for the next batch, as it does the
    /// log buffers (a fresh `Vec` grew once per batch, at low load once per message).
    staged: &'a mut Vec<Staged>,
    /// The first error that fails the whole batch (invariant 3).
    fatal: Option<StoreError>,
}

impl Batch<'_> {
    fn txn(&mut self) -> Result<&WriteTransaction, StoreError> {
        if self.txn.is_none() {
            self.txn = Some(self.db.begin_write()?);
        }
        self.txn
            .as_ref()
            .ok_or_else(|| StoreError::Io("no write transaction".to_owned()))
    }

    fn full(&self) -> bool {
        self.staged.len() >= MAX_BATCH || self.log.bytes() >= BATCH_LOG_BYTES
    }

    /// Applies one op (see `tables` invariant 1), or skips it once the batch has failed.
    fn apply(&mut self, op: Op, appender: &mut Appender) {
        if let Some(err) = &self.fatal {
            let err = err.clone();
            self.staged.push(op.answer_with(err));
            return;
        }
        let s = match op {
            Op::Append { message, reply } => {
                let outcome = appender.stage(message, self.txn.as_ref(), self.log);
                Staged::Append(Pending {
                    reply,
                    outcome,
                    uses_log: true,
                })
            }
            Op::Create {
                patient,
                doctor,
                now_ms,
                reply,
            } => {
                let outcome = self
                    .txn()
                    .and_then(|txn| tables::create_consultation(txn, &patient, &doctor, now_ms));
                Staged::Consultation(pending(reply, outcome))
            }
            Op::Close {
                id,
                reason,
                now_ms,
                reply,
            } => {
                let outcome = self
                    .txn()
                    .and_then(|txn| tables::close_consultation(txn, &id, &reason, now_ms))
                    .map(|mut record| {
                        appender.closed(&mut record);
                        record
                    });
                Staged::Consultation(pending(reply, outcome))
            }
            Op::UseRefresh {
                jti,
                sid,
                exp_unix,
                reply,
            } => {
                let outcome = self
                    .txn()
                    .and_then(|txn| tables::use_refresh(txn, &jti, &sid, exp_unix));
                Staged::Refresh(pending(reply, outcome))
            }
            Op::Revoke {
                sid,
                until_unix,
                reply,
            } => {
                let outcome = self
                    .txn()
                    .and_then(|txn| tables::revoke_sid(txn, &sid, until_unix));
                Staged::Revoke(pending(reply, outcome))
            }
            Op::Purge { now_unix, reply } => {
                let outcome = self
                    .txn()
                    .and_then(|txn| tables::purge_expired(txn, now_unix));
                Staged::Purge(pending(reply, outcome))
            }
        };
        self.fatal = s.fatal();
        self.staged.push(s);
    }
}

impl Op {
    /// Not applied: the batch already failed; the reply carries the batch's error.
    fn answer_with(self, err: StoreError) -> Staged {
        match self {
            Op::Create { reply, .. } | Op::Close { reply, .. } => {
                Staged::Consultation(pending(reply, Err(err)))
            }
            Op::Append { reply, .. } => Staged::Append(pending(reply, Err(err))),
            Op::UseRefresh { reply, .. } => Staged::Refresh(pending(reply, Err(err))),
            Op::Revoke { reply, .. } => Staged::Revoke(pending(reply, Err(err))),
            Op::Purge { reply, .. } => Staged::Purge(pending(reply, Err(err))),
        }
    }
}

/// Blocks while the test hook holds the writer ([`WriterShared::held`]).
fn wait_while_held(shared: &WriterShared) {
    let held = shared
        .held
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _released = shared
        .released
        .wait_while(held, |held| *held)
        .unwrap_or_else(std::sync::PoisonError::into_inner);
}

/// The writer thread's body. Returns when the queue is closed and drained (invariant 4).
pub(crate) fn run(
    db: Arc<Database>,
    mut appender: Appender,
    ops: async_channel::Receiver<Op>,
    shared: Arc<WriterShared>,
) {
    let mut log = LogBatch::default();
    let mut staged = Vec::new();
    let mut linger = Linger::new(Instant::now());
    while let Ok(first) = ops.recv_blocking() {
        wait_while_held(&shared);
        log.clear();
        staged.clear();
        let mut batch = Batch {
            db: &db,
            txn: None,
            log: &mut log,
            staged: &mut staged,
            fatal: None,
        };
        batch.apply(first, &mut appender);
        drain(&ops, &mut batch, &mut appender);
        if let Some(wait) = linger.wait(batch.staged.len()).filter(|_| !batch.full()) {
            // Under load: let the batch fill a little more before paying for the fdatasync.
            std::thread::sleep(wait);
            drain(&ops, &mut batch, &mut appender);
        }
        let size = batch.staged.len();
        commit_batch(batch, &mut appender, &shared);
        linger.committed(Instant::now(), size);
        if ops.is_empty() {
            appender.prewrite();
        }
    }
    log::debug!(
        "event=store_writer_exit commits={}",
        shared.commits.load(Ordering::Relaxed)
    );
}

/// Bounded drain of what is already queued: the rest waits for the next commit.
fn drain(ops: &async_channel::Receiver<Op>, batch: &mut Batch<'_>, appender: &mut Appender) {
    while !batch.full() {
        match ops.try_recv() {
            Ok(op) => batch.apply(op, appender),
            Err(_) => break,
        }
    }
}

fn commit_batch(batch: Batch<'_>, appender: &mut Appender, shared: &WriterShared) {
    let Batch {
        txn,
        log,
        staged,
        mut fatal,
        ..
    } = batch;
    let size = staged.len();
    if fatal.is_none() && shared.fail_commits.load(Ordering::Relaxed) {
        fatal = Some(StoreError::Io("commit failed (fault injection)".to_owned()));
    }
    let started = Instant::now();
    let redb_outcome = match (fatal, txn) {
        (Some(err), txn) => {
            if let Some(Err(e)) = txn.map(|t| t.abort()) {
                log::error!("event=store_abort_failed error={}", StoreError::from(e));
            }
            Err(err)
        }
        (None, Some(txn)) => txn.commit().map_err(StoreError::from),
        (None, None) => Ok(()),
    };
    let log_outcome = match &redb_outcome {
        Ok(()) => appender.commit(log),
        Err(e) => {
            appender.abort();
            Err(e.clone())
        }
    };
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match (&redb_outcome, &log_outcome) {
        (Ok(()), Ok(())) => {
            shared.commits.fetch_add(1, Ordering::Relaxed);
            shared
                .ops_committed
                .fetch_add(size as u64, Ordering::Relaxed);
            shared
                .commit_micros_total
                .fetch_add(micros, Ordering::Relaxed);
            shared
                .commit_micros_max
                .fetch_max(micros, Ordering::Relaxed);
            log::trace!("event=store_commit ops={size} commit_us={micros}");
        }
        (Err(e), _) | (Ok(()), Err(e)) => {
            shared.failed_batches.fetch_add(1, Ordering::Relaxed);
            log::warn!("event=store_batch_failed ops={size} error={e}");
        }
    }
    for s in staged.drain(..) {
        if s.uses_log() {
            s.deliver(&log_outcome);
        } else {
            s.deliver(&redb_outcome);
        }
    }
}
