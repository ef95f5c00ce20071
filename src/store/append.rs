//! Appending messages: the writer thread's half of the message log. Stages a batch's messages
//! (seq, dedupe, encoding) in memory, then writes them with one write and one fdatasync, then
//! publishes their locations.
//!
//! # Invariants
//! 1. Seqs are given in the order ops are staged, dense per consultation from 1 (the index
//!    refuses anything else), and a (consultation, from, client_id) key is stored at most once:
//!    a repeat, in the same batch or any later one, is answered with the original message.
//! 2. Nothing staged is visible to readers until [`Appender::commit`] wrote and synced it;
//!    a batch that fails leaves the log file, the index and the cursors as they were.
//! 3. A refusal (`NotFound`, `Closed`) is decided before anything is staged for that op.
//!
//! # Implementation
//! Staged records are encoded straight into the batch buffer; a dedupe hit on a message of the
//! same batch is decoded back from that buffer. The consultation's state comes from redb: from
//! the batch's write transaction when there is one (so a close earlier in the batch counts),
//! else from a read transaction.

use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock};

use redb::{Database, ReadableDatabase, WriteTransaction};

use super::cursors::{key_hash, Cursor, Cursors, DedupeMap};
use super::index::{Loc, MessageIndex};
use super::log_record::{decode, encode, Parsed};
use super::msglog::MessageLog;
use super::records::{Appended, ConsultState, Consultation, NewMessage, StoredMessage};
use super::{tables, StoreError};

/// The messages of one batch, encoded, not yet written.
#[derive(Debug, Default)]
pub(crate) struct LogBatch {
    buf: Vec<u8>,
    staged: Vec<StagedRecord>,
    /// The staged records' consultation ids, end to end: kept, like the buffers, from batch to
    /// batch, where an id of its own cost each message an allocation.
    ids: String,
}

#[derive(Debug)]
struct StagedRecord {
    /// Where its consultation id is in [`LogBatch::ids`].
    id: Range<usize>,
    seq: u64,
    start: usize,
    len: usize,
    ts_ms: u64,
}

impl LogBatch {
    /// Bytes staged so far.
    pub(crate) fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Empties the batch for the next one, keeping its buffers' capacity: a fresh buffer per
    /// batch made glibc consolidate freed chunks on every commit.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.staged.clear();
        self.ids.clear();
    }

    fn stage(&mut self, consultation: &str, seq: u64, start: usize, ts_ms: u64) {
        let id = self.ids.len()..self.ids.len() + consultation.len();
        self.ids.push_str(consultation);
        self.staged.push(StagedRecord {
            id,
            seq,
            start,
            len: self.buf.len() - start,
            ts_ms,
        });
    }

    /// The consultation id of a staged record. Its range was taken when the id was pushed and
    /// both are cleared together, so the `""` fallback is never used.
    fn consultation(&self, r: &StagedRecord) -> &str {
        self.ids.get(r.id.clone()).unwrap_or_default()
    }

    fn message(&self, consultation: &str, seq: u64) -> Option<StoredMessage> {
        let r = self
            .staged
            .iter()
            .rev()
            .find(|r| r.seq == seq && self.consultation(r) == consultation)?;
        match decode(self.buf.get(r.start..r.start + r.len)?) {
            Parsed::Record(m, _) => Some(m),
            _ => None,
        }
    }
}

/// The writer's message-log state.
pub(crate) struct Appender {
    db: Arc<Database>,
    log: Arc<MessageLog>,
    index: Arc<RwLock<MessageIndex>>,
    /// Where the next batch is written: the end of the durable log.
    end: u64,
    cursors: Cursors,
}

impl Appender {
    pub(crate) fn new(
        db: Arc<Database>,
        log: Arc<MessageLog>,
        index: Arc<RwLock<MessageIndex>>,
        end: u64,
    ) -> Appender {
        Appender {
            db,
            log,
            index,
            end,
            cursors: Cursors::default(),
        }
    }

    /// Stages one append (invariants 1 and 3).
    pub(crate) fn stage(
        &mut self,
        m: NewMessage,
        txn: Option<&WriteTransaction>,
        batch: &mut LogBatch,
    ) -> Result<Appended, StoreError> {
        let reader = Reader {
            log: &self.log,
            index: &self.index,
            batch,
        };
        let cursor = match self.cursors.get_mut(&m.consultation) {
            Some(c) => c,
            None => {
                let record = consultation(&self.db, txn, &m.consultation)?;
                let cursor = reader.load_cursor(&record)?;
                if cursor.state == ConsultState::Closed {
                    // Invariant 2 of `cursors`: not cached; only a retry can succeed.
                    return match reader.find(&m.consultation, &cursor, &m.from, &m.client_id)? {
                        Some(original) => Ok(duplicate(original)),
                        None => Err(StoreError::Closed),
                    };
                }
                self.cursors.insert(&m.consultation, cursor)
            }
        };
        if let Some(original) = reader.find(&m.consultation, cursor, &m.from, &m.client_id)? {
            return Ok(duplicate(original));
        }
        if cursor.state == ConsultState::Closed {
            return Err(StoreError::Closed);
        }
        let seq = cursor.last_seq.checked_add(1).ok_or_else(|| {
            StoreError::Corrupt(format!("seq overflow consultation={}", m.consultation))
        })?;
        let key = key_hash(&m.from, &m.client_id);
        // The caller's strings move into the stored message: no copy per field.
        let message = StoredMessage {
            consultation: m.consultation,
            seq,
            from: m.from,
            role: m.role,
            body: m.body,
            client_id: m.client_id,
            ts_ms: m.ts_ms,
            traceparent: m.traceparent,
        };
        let start = batch.buf.len();
        encode(&message, &mut batch.buf)?;
        batch.stage(&message.consultation, seq, start, message.ts_ms);
        cursor.last_seq = seq;
        cursor.last_ts_ms = message.ts_ms;
        cursor.dedupe.entry(key).or_insert(seq);
        Ok(Appended {
            message,
            duplicate: false,
        })
    }

    /// A close of `record` was applied in the batch: later appends in it are refused, and the
    /// returned record carries the message counts, staged ones included.
    pub(crate) fn closed(&mut self, record: &mut Consultation) {
        match self.cursors.close(&record.id) {
            Some(cursor) => {
                if cursor.last_seq > 0 {
                    record.last_seq = cursor.last_seq;
                    record.last_message_at_ms = cursor.last_ts_ms;
                }
            }
            None => read_index(&self.index).fill(record),
        }
    }

    /// Writes and syncs the batch, then publishes it (invariant 2). On error the log is cut
    /// back and the cursors are dropped.
    pub(crate) fn commit(&mut self, batch: &LogBatch) -> Result<(), StoreError> {
        if batch.buf.is_empty() {
            self.cursors.drop_closed();
            return Ok(());
        }
        if let Err(e) = self.log.append(self.end, &batch.buf) {
            if let Err(cut) = self.log.truncate(self.end) {
                log::error!(
                    "event=message_log_cut_back_failed end={} error={cut}",
                    self.end
                );
            }
            self.cursors.clear();
            return Err(StoreError::Io(format!("write message log: {e}")));
        }
        {
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            for r in &batch.staged {
                let loc = Loc {
                    offset: self.end + r.start as u64,
                    len: r.len,
                };
                let consultation = batch.consultation(r);
                if let Err(why) = index.push(consultation, r.seq, loc, r.ts_ms) {
                    // Only a bug in staging could get here; the record is durable regardless
                    // and the next start rebuilds the index from the file.
                    log::error!(
                        "event=message_index_push_failed consultation={} seq={} reason=\"{why}\"",
                        consultation,
                        r.seq
                    );
                }
            }
        }
        self.end += batch.buf.len() as u64;
        self.cursors.drop_closed();
        Ok(())
    }

    /// The batch failed before its log write: forget what was staged (invariant 2).
    pub(crate) fn abort(&mut self) {
        self.cursors.clear();
    }

    /// Extends the log's pre-written tail by a step if it runs short (`MessageLog::prewrite`).
    /// For the writer's idle moments: the next batch waits while it runs. A failure only costs
    /// speed (the next batch grows the file instead), so it is logged, not returned.
    pub(crate) fn prewrite(&self) {
        match self.log.prewrite(self.end) {
            Ok(0) => {}
            Ok(bytes) => log::debug!("event=message_log_prewritten bytes={bytes}"),
            Err(e) => log::warn!("event=message_log_prewrite_failed error={e}"),
        }
    }
}

fn duplicate(message: StoredMessage) -> Appended {
    Appended {
        message,
        duplicate: true,
    }
}

pub(crate) fn read_index(
    index: &RwLock<MessageIndex>,
) -> std::sync::RwLockReadGuard<'_, MessageIndex> {
    index.read().unwrap_or_else(PoisonError::into_inner)
}

fn consultation(
    db: &Database,
    txn: Option<&WriteTransaction>,
    id: &str,
) -> Result<Consultation, StoreError> {
    let record = match txn {
        Some(txn) => tables::consultation_for_write(txn, id)?,
        None => tables::consultation(&db.begin_read()?, id)?,
    };
    record.ok_or(StoreError::NotFound)
}

/// Reads committed and staged messages.
struct Reader<'a> {
    log: &'a MessageLog,
    index: &'a RwLock<MessageIndex>,
    batch: &'a LogBatch,
}

impl Reader<'_> {
    fn message(&self, consultation: &str, seq: u64) -> Result<StoredMessage, StoreError> {
        let loc = read_index(self.index).get(consultation, seq);
        match loc {
            Some(loc) => self.log.read(loc),
            None => self.batch.message(consultation, seq).ok_or_else(|| {
                StoreError::Corrupt(format!("missing seq={seq} consultation={consultation}"))
            }),
        }
    }

    /// The cursor of a consultation as it is durably (no message of it is staged yet).
    fn load_cursor(&self, record: &Consultation) -> Result<Cursor, StoreError> {
        let (last_seq, last_ts_ms) = read_index(self.index)
            .last(&record.id)
            .unwrap_or((0, record.created_at_ms));
        let mut dedupe = DedupeMap::default();
        if record.state == ConsultState::Open {
            for seq in 1..=last_seq {
                let m = self.message(&record.id, seq)?;
                dedupe.entry(key_hash(&m.from, &m.client_id)).or_insert(seq);
            }
        }
        Ok(Cursor {
            state: record.state,
            last_seq,
            last_ts_ms,
            dedupe,
        })
    }

    /// The message first stored under (from, client_id), if any (invariant 3 of `cursors`).
    fn find(
        &self,
        consultation: &str,
        cursor: &Cursor,
        from: &str,
        client_id: &str,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let same_key = |m: &StoredMessage| m.from == from && m.client_id == client_id;
        let hint = cursor.dedupe.get(&key_hash(from, client_id)).copied();
        if let Some(seq) = hint {
            let m = self.message(consultation, seq)?;
            if same_key(&m) {
                return Ok(Some(m));
            }
        } else if cursor.state == ConsultState::Open {
            return Ok(None);
        }
        // A hash collision, or a closed consultation without a dedupe map: scan it.
        for seq in 1..=cursor.last_seq {
            let m = self.message(consultation, seq)?;
            if same_key(&m) {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(batch: &LogBatch) -> Vec<(&str, u64)> {
        batch
            .staged
            .iter()
            .map(|r| (batch.consultation(r), r.seq))
            .collect()
    }

    #[test]
    fn append_log_batch_ids_are_per_record_and_do_not_outlive_a_clear() {
        let mut batch = LogBatch::default();
        for (id, seq) in [("c0ffee", 1), ("beef", 1), ("c0ffee", 2)] {
            let start = batch.buf.len();
            batch.buf.extend_from_slice(b"record");
            batch.stage(id, seq, start, 0);
        }
        assert_eq!(ids(&batch), [("c0ffee", 1), ("beef", 1), ("c0ffee", 2)]);
        batch.clear();
        assert!(ids(&batch).is_empty());
        let start = batch.buf.len();
        batch.buf.extend_from_slice(b"next");
        batch.stage("ab", 3, start, 0);
        assert_eq!(ids(&batch), [("ab", 3)]);
        assert_eq!(batch.staged.first().map(|r| (r.start, r.len)), Some((0, 4)));
    }
}
