//! The writer thread: the only code that writes the file, one group commit per batch.
//!
//! # Invariants
//! 1. Exactly one thread calls `begin_write`, so ops apply in queue order and a batch never
//!    waits on a lock.
//! 2. A batch holds 1..=[`MAX_BATCH`] ops, applied in one write transaction and committed once.
//!    Every op of a batch gets its reply only after that commit returned: an `Ok` reply means
//!    the op is durable (redb's default `Durability::Immediate`: fsync before `commit` returns).
//! 3. If the commit (or an `Io` error inside any op) fails, the transaction is aborted, nothing
//!    of the batch is visible, and every op of the batch is answered with that error.
//! 4. The thread exits only when the op queue is closed and empty: queued ops are never dropped.
//!
//! # Implementation
//! The thread blocks on the queue for the first op, then drains whatever else is already queued
//! (bounded by [`MAX_BATCH`]) without waiting: under load many callers' ops share one fsync,
//! when idle a lone op is committed at once (no added latency). Each op carries its own
//! `bounded(1)` reply channel; a caller that stopped waiting simply never reads its reply,
//! and its op still commits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use redb::{Database, WriteTransaction};

use super::records::{Appended, Consultation, NewMessage, PurgeCount, RefreshUse};
use super::{tables, StoreError};

/// Most ops in one write transaction. Bounds the time a batch holds its callers (one commit of
/// at most this many small records) and the memory of one transaction; 256 sends is far above
/// what one kiosk gateway queues between two fsyncs, so grouping is never starved by it.
pub const MAX_BATCH: usize = 256;

/// Ops that may wait in the queue before callers are made to wait to enqueue (backpressure):
/// four full batches, so the next batches are already waiting while one commits.
pub const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

/// Where a write op's result goes: the caller's `bounded(1)` reply channel.
pub(crate) type Reply<T> = async_channel::Sender<Result<T, StoreError>>;

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

/// An applied op waiting for its batch's commit to answer its caller.
trait Staged: Send {
    /// The `Io` error that poisons the batch, if this op hit one.
    fn fatal(&self) -> Option<StoreError>;
    /// Answers the caller: the op's own outcome if the batch committed, else the batch's error.
    fn deliver(self: Box<Self>, batch: &Result<(), StoreError>);
}

struct Pending<T> {
    reply: Reply<T>,
    outcome: Result<T, StoreError>,
}

impl<T: Send + 'static> Staged for Pending<T> {
    fn fatal(&self) -> Option<StoreError> {
        match &self.outcome {
            Err(e @ StoreError::Io(_)) => Some(e.clone()),
            _ => None,
        }
    }

    fn deliver(self: Box<Self>, batch: &Result<(), StoreError>) {
        let answer = match batch {
            Ok(()) => self.outcome,
            Err(e) => Err(e.clone()),
        };
        // Capacity 1 and one send: never full. Closed means the caller stopped waiting.
        let _ = self.reply.try_send(answer);
    }
}

fn staged<T: Send + 'static>(reply: Reply<T>, outcome: Result<T, StoreError>) -> Box<dyn Staged> {
    Box::new(Pending { reply, outcome })
}

impl Op {
    /// Applies the op inside the batch's transaction (see `tables` invariant 1).
    fn apply(self, txn: &WriteTransaction) -> Box<dyn Staged> {
        match self {
            Op::Create {
                patient,
                doctor,
                now_ms,
                reply,
            } => staged(
                reply,
                tables::create_consultation(txn, &patient, &doctor, now_ms),
            ),
            Op::Append { message, reply } => staged(reply, tables::append_message(txn, &message)),
            Op::Close {
                id,
                reason,
                now_ms,
                reply,
            } => staged(reply, tables::close_consultation(txn, &id, &reason, now_ms)),
            Op::UseRefresh {
                jti,
                sid,
                exp_unix,
                reply,
            } => staged(reply, tables::use_refresh(txn, &jti, &sid, exp_unix)),
            Op::Revoke {
                sid,
                until_unix,
                reply,
            } => staged(reply, tables::revoke_sid(txn, &sid, until_unix)),
            Op::Purge { now_unix, reply } => staged(reply, tables::purge_expired(txn, now_unix)),
        }
    }

    /// Not applied: the batch already failed; the reply will carry the batch's error.
    fn skip(self) -> Box<dyn Staged> {
        fn e<T>() -> Result<T, StoreError> {
            Err(StoreError::Io("batch aborted".to_owned()))
        }
        match self {
            Op::Create { reply, .. } | Op::Close { reply, .. } => staged(reply, e()),
            Op::Append { reply, .. } => staged(reply, e()),
            Op::UseRefresh { reply, .. } => staged(reply, e()),
            Op::Revoke { reply, .. } => staged(reply, e()),
            Op::Purge { reply, .. } => staged(reply, e()),
        }
    }
}

/// The writer thread's body. Returns when the queue is closed and drained (invariant 4).
pub(crate) fn run(db: Arc<Database>, ops: async_channel::Receiver<Op>, shared: Arc<WriterShared>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = ops.recv_blocking() {
        batch.push(first);
        // Bounded drain: a batch never exceeds MAX_BATCH, the rest waits for the next commit.
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        debug_assert!(
            (1..=MAX_BATCH).contains(&batch.len()),
            "batch size out of bounds: len={} max={MAX_BATCH}",
            batch.len()
        );
        commit_batch(&db, &mut batch, &shared);
    }
    log::debug!(
        "event=store_writer_exit commits={}",
        shared.commits.load(Ordering::Relaxed)
    );
}

fn commit_batch(db: &Database, batch: &mut Vec<Op>, shared: &WriterShared) {
    let size = batch.len();
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            let err = StoreError::from(e);
            log::error!("event=store_begin_failed ops={size} error={err}");
            shared.failed_batches.fetch_add(1, Ordering::Relaxed);
            let outcome = Err(err);
            for op in batch.drain(..) {
                op.skip().deliver(&outcome);
            }
            return;
        }
    };
    let mut staged = Vec::with_capacity(size);
    let mut fatal: Option<StoreError> = None;
    for op in batch.drain(..) {
        if fatal.is_some() {
            staged.push(op.skip());
            continue;
        }
        let s = op.apply(&txn);
        fatal = s.fatal();
        staged.push(s);
    }
    if fatal.is_none() && shared.fail_commits.load(Ordering::Relaxed) {
        fatal = Some(StoreError::Io("commit failed (fault injection)".to_owned()));
    }
    let outcome = match fatal {
        Some(err) => {
            if let Err(e) = txn.abort() {
                log::error!("event=store_abort_failed error={}", StoreError::from(e));
            }
            Err(err)
        }
        None => {
            let started = Instant::now();
            let committed = txn.commit().map_err(StoreError::from);
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            if committed.is_ok() {
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
            committed
        }
    };
    if let Err(e) = &outcome {
        shared.failed_batches.fetch_add(1, Ordering::Relaxed);
        log::warn!("event=store_batch_failed ops={size} error={e}");
    }
    debug_assert_eq!(staged.len(), size, "every op of the batch must be answered");
    for s in staged {
        s.deliver(&outcome);
    }
}
