//! The message log: `messages.log` in the data dir, every stored message as one checksummed
//! record, appended in commit order.
//!
//! # Invariants
//! 1. A batch of records is written with one positional write at the end of the valid log and
//!    made durable with one `fdatasync` before any of its messages is acknowledged.
//! 2. After a crash, only the last batch can be partly on disk. Recovery keeps every record up
//!    to the first one that is torn, fails its checksum or breaks its consultation's seq order.
//!    Zeros after it are the pre-written tail (invariant 4) and are kept. Non-zero bytes after
//!    it are the torn batch, and the file is truncated there — if they end no further than one
//!    batch can span ([`MAX_TORN_BYTES`]). A bad record followed by non-zero bytes further on is
//!    damage, not a torn write: [`StoreError::Corrupt`], and the gateway does not start on it.
//! 3. A failed batch leaves the log as it was before it: the writer truncates back to the old
//!    end, and the next batch writes there.
//! 4. Past the end of the last record, the file holds only zeros (the pre-written tail, see
//!    [`MessageLog::prewrite`]), and no record starts with a zero length, so a zero header is
//!    where the records end.
//!
//! # Implementation
//! Why a log of our own next to redb: a message write must be cheap and sequential. In redb
//! each message of a batch lands in a different consultation's B-tree leaf, so a commit copies,
//! checksums and writes one 4 KiB page per message, and each commit costs about 170 µs of CPU
//! (`cargo bench --bench store`: 53 µs per message in a group commit over 64 consultations,
//! against 13 µs for this log; BENCHMARKS.md). The log is written at its end only,
//! and reads are positional (`pread`) at locations kept by [`super::index`]. Consultations,
//! tokens and revocations, which change rarely, stay in redb.
//!
//! Why a pre-written tail: an `fdatasync` after a write that grows the file must also commit
//! the new size through the file system's journal; one into blocks already written does not.
//! On this machine's ext4 that halves the sync (p50 104 → 54 µs in a probe, docs/perf.md), and
//! the sync is most of a message's latency at low load. So the writer keeps zeros written
//! ahead of the end, [`PREWRITE_STEP`] at a time and only while its queue is empty, so no sender
//! waits for them. `fallocate` would not do: ext4 marks such blocks unwritten, and the first
//! write into them changes the extent tree, which is journaled again.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::index::{Loc, MessageIndex};
use super::log_record::{decode, Parsed, MAX_RECORD_BYTES};
use super::records::StoredMessage;
use super::StoreError;

/// Name of the message log inside the data dir.
pub const LOG_FILE_NAME: &str = "messages.log";
/// Log bytes one batch may add before the writer commits it (the last record may cross it).
pub(crate) const BATCH_LOG_BYTES: usize = 1024 * 1024;
/// The most a torn final batch can span: anything bad further from the end is damage.
pub(crate) const MAX_TORN_BYTES: u64 = (BATCH_LOG_BYTES + MAX_RECORD_BYTES) as u64;
/// Read size while recovering.
const SCAN_CHUNK: usize = 1024 * 1024;
/// Zeros written ahead at a time: one write and sync of about 1 ms here, short enough for a
/// send that arrives meanwhile to wait on, and ~4,000 small messages of room.
pub(crate) const PREWRITE_STEP: u64 = 1024 * 1024;
/// The writer writes another step when fewer pre-written bytes than this remain past the
/// end: room for a burst of batches while the writer is too busy to pre-write, and at most
/// `PREWRITE_STEP` + this of zeros on disk (a test suite opens hundreds of stores).
pub(crate) const PREWRITE_LOW_WATER: u64 = PREWRITE_STEP / 2;
/// Pre-written lengths are whole pages, so no page is shared by the data and a later extension.
const PAGE_BYTES: u64 = 4096;
/// Zeros to write from; in `.bss`, so it costs no memory until written from (then the shared
/// zero page).
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The open log file.
#[derive(Debug)]
pub(crate) struct MessageLog {
    file: File,
    /// The file's length: the records, then the pre-written zeros. Changed only by the writer
    /// thread (and by recovery before it starts).
    len: AtomicU64,
}

/// What opening found.
pub(crate) struct Recovered {
    pub log: MessageLog,
    /// Offset where the next batch goes: the end of the last valid record.
    pub end: u64,
    /// Locations of every valid record.
    pub index: MessageIndex,
}

impl MessageLog {
    /// Opens (creating, mode `file_mode`) the log in `dir` and recovers it (invariant 2).
    pub(crate) fn open(dir: &Path, file_mode: u32) -> Result<Recovered, StoreError> {
        let path = dir.join(LOG_FILE_NAME);
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(file_mode)
            .open(&path)
            .map_err(|e| StoreError::Io(format!("open {}: {e}", path.display())))?;
        if created {
            // The new directory entry must survive a crash as well as the records.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::Io(format!("sync dir {}: {e}", dir.display())))?;
        }
        let log = MessageLog {
            file,
            len: AtomicU64::new(0),
        };
        let (end, index) = log.recover()?;
        Ok(Recovered { log, end, index })
    }

    fn recover(&self) -> Result<(u64, MessageIndex), StoreError> {
        let io = |e: std::io::Error| StoreError::Io(format!("read message log: {e}"));
        let file_len = self.file.metadata().map_err(io)?.len();
        let mut index = MessageIndex::default();
        let mut reader = &self.file;
        let mut buf: Vec<u8> = Vec::with_capacity(SCAN_CHUNK);
        let mut start = 0usize; // first unparsed byte of buf
        let mut offset = 0u64; // file offset of buf[start]
        let mut eof = false;
        let bad = loop {
            let pending = buf.get(start..).unwrap_or_default();
            match decode(pending) {
                Parsed::Record(m, len) => {
                    let loc = Loc { offset, len };
                    if let Err(why) = index.push(&m.consultation, m.seq, loc, m.ts_ms) {
                        break Some(why);
                    }
                    start += len;
                    offset += len as u64;
                }
                Parsed::Incomplete(_) if eof => {
                    break (!pending.is_empty()).then_some("torn record at the end");
                }
                Parsed::Incomplete(_) => {
                    buf.drain(..start);
                    start = 0;
                    let have = buf.len();
                    buf.resize(have + SCAN_CHUNK, 0);
                    let n = read_some(&mut reader, buf.get_mut(have..).unwrap_or_default())
                        .map_err(io)?;
                    buf.truncate(have + n);
                    eof = n == 0;
                }
                Parsed::Invalid(why) => break Some(why),
            }
        };
        self.len.store(file_len, Ordering::Relaxed);
        if let Some(why) = bad {
            // Invariant 2: zeros after the last record are the pre-written tail.
            let dropped = self.nonzero_end(offset, file_len).map_err(io)? - offset;
            if dropped == 0 {
                return Ok((offset, index));
            }
            if dropped > MAX_TORN_BYTES {
                return Err(StoreError::Corrupt(format!(
                    "message log: {why} at offset {offset}, data for {dropped} bytes after it"
                )));
            }
            log::warn!(
                "event=message_log_truncated offset={offset} dropped_bytes={dropped} reason=\"{why}\""
            );
            self.truncate(offset)
                .map_err(|e| StoreError::Io(format!("truncate message log: {e}")))?;
        }
        Ok((offset, index))
    }

    /// The end of the last non-zero byte in `from..to`, or `from` if all are zero. Scans back
    /// from `to`: the zeros are at the end.
    fn nonzero_end(&self, from: u64, to: u64) -> std::io::Result<u64> {
        let mut buf = vec![0u8; SCAN_CHUNK];
        let mut hi = to;
        while hi > from {
            let lo = hi.saturating_sub(SCAN_CHUNK as u64).max(from);
            let chunk = buf.get_mut(..(hi - lo) as usize).unwrap_or_default();
            self.file.read_exact_at(chunk, lo)?;
            if let Some(at) = chunk.iter().rposition(|&b| b != 0) {
                return Ok(lo + at as u64 + 1);
            }
            hi = lo;
        }
        Ok(from)
    }

    /// Writes `bytes` at `at` and makes them durable (invariant 1).
    pub(crate) fn append(&self, at: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(bytes, at)?;
        self.len
            .fetch_max(at + bytes.len() as u64, Ordering::Relaxed);
        self.file.sync_data()
    }

    /// Cuts the file back to `len` bytes, durably (invariant 3).
    pub(crate) fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)?;
        self.len.store(len, Ordering::Relaxed);
        self.file.sync_data()
    }

    /// Writes and syncs one [`PREWRITE_STEP`] of zeros after the file's end, unless
    /// [`PREWRITE_LOW_WATER`] bytes past `end` (the end of the records) are already written.
    /// Returns the bytes written. Invariant 4 holds whatever part of it reaches the disk: the
    /// file only grows by zeros (or by holes, which read as zeros).
    pub(crate) fn prewrite(&self, end: u64) -> std::io::Result<u64> {
        let len = self.len.load(Ordering::Relaxed);
        if len >= end + PREWRITE_LOW_WATER {
            return Ok(0);
        }
        let upto = (len + PREWRITE_STEP).next_multiple_of(PAGE_BYTES);
        let mut at = len;
        while at < upto {
            let n = (upto - at).min(ZEROS.len() as u64);
            self.file
                .write_all_at(ZEROS.get(..n as usize).unwrap_or_default(), at)?;
            at += n;
        }
        self.file.sync_data()?;
        self.len.store(upto, Ordering::Relaxed);
        Ok(upto - len)
    }

    /// Reads the message at `loc`.
    pub(crate) fn read(&self, loc: Loc) -> Result<StoredMessage, StoreError> {
        let mut buf = vec![0u8; loc.len];
        self.file
            .read_exact_at(&mut buf, loc.offset)
            .map_err(|e| StoreError::Io(format!("read message log: {e}")))?;
        match decode(&buf) {
            Parsed::Record(m, len) if len == loc.len => Ok(m),
            _ => Err(StoreError::Corrupt(format!(
                "message log: no valid record at offset {}",
                loc.offset
            ))),
        }
    }
}

/// `read` that retries on EINTR and returns 0 only at the end of the file.
fn read_some(reader: &mut &File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::log_record::encode;
    use super::*;

    fn message(consultation: &str, seq: u64, body: &str) -> StoredMessage {
        StoredMessage {
            consultation: consultation.to_owned(),
            seq,
            from: "p1".to_owned(),
            role: "patient".to_owned(),
            body: body.to_owned(),
            client_id: format!("c-{seq}"),
            ts_ms: 1_700_000_000_000 + seq,
            traceparent: String::new(),
        }
    }

    fn write(dir: &Path, messages: &[StoredMessage]) -> Result<u64, StoreError> {
        let r = MessageLog::open(dir, 0o600)?;
        let mut buf = Vec::new();
        for m in messages {
            encode(m, &mut buf)?;
        }
        r.log
            .append(r.end, &buf)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(r.end + buf.len() as u64)
    }

    #[test]
    fn log_reopen_indexes_every_record_and_reads_them_back() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Io(e.to_string()))?;
        let ms = [
            message("a", 1, "one"),
            message("b", 1, "x"),
            message("a", 2, "two"),
        ];
        let end = write(dir.path(), &ms)?;
        let r = MessageLog::open(dir.path(), 0o600)?;
        assert_eq!(r.end, end);
        assert_eq!(r.index.last("a"), Some((2, ms[2].ts_ms)));
        let locs = r.index.after("a", 0, 10);
        assert_eq!(locs.len(), 2);
        assert_eq!(r.log.read(locs[1].1)?, ms[2]);
        Ok(())
    }

    #[test]
    fn log_torn_tail_is_truncated_and_the_rest_kept() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Io(e.to_string()))?;
        let end = write(
            dir.path(),
            &[message("a", 1, "kept"), message("a", 2, "torn")],
        )?;
        let path = dir.path().join(LOG_FILE_NAME);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        file.set_len(end - 3)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let r = MessageLog::open(dir.path(), 0o600)?;
        assert_eq!(r.index.last("a").map(|l| l.0), Some(1));
        let len = std::fs::metadata(&path)
            .map_err(|e| StoreError::Io(e.to_string()))?
            .len();
        assert_eq!(len, r.end, "the torn bytes are gone from the file");
        Ok(())
    }

    #[test]
    fn log_seq_gap_at_the_end_is_dropped() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Io(e.to_string()))?;
        write(
            dir.path(),
            &[message("a", 1, "one"), message("a", 3, "gap")],
        )?;
        let r = MessageLog::open(dir.path(), 0o600)?;
        assert_eq!(r.index.last("a").map(|l| l.0), Some(1));
        Ok(())
    }

    #[test]
    fn log_damage_far_from_the_end_is_corrupt() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Io(e.to_string()))?;
        let body = "y".repeat(16 * 1024);
        let many: Vec<_> = (1..=100).map(|s| message("a", s, &body)).collect();
        write(dir.path(), &many)?;
        let path = dir.path().join(LOG_FILE_NAME);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        file.write_all_at(b"XX", 20)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        assert_opens_corrupt(dir.path());
        Ok(())
    }

    /// Opening the log in `dir` is refused as damage.
    fn assert_opens_corrupt(dir: &Path) {
        let opened = MessageLog::open(dir, 0o600);
        assert!(
            matches!(opened, Err(StoreError::Corrupt(_))),
            "{:?}",
            opened.err()
        );
    }

    fn file_len(dir: &Path) -> Result<u64, StoreError> {
        std::fs::metadata(dir.join(LOG_FILE_NAME))
            .map(|m| m.len())
            .map_err(|e| StoreError::Io(e.to_string()))
    }

    fn prewrite(log: &MessageLog, end: u64) -> Result<u64, StoreError> {
        log.prewrite(end).map_err(|e| StoreError::Io(e.to_string()))
    }

    /// A log of `messages` with one pre-written step after them: the open log and its end.
    fn prewritten(dir: &Path, messages: &[StoredMessage]) -> Result<(Recovered, u64), StoreError> {
        let end = write(dir, messages)?;
        let r = MessageLog::open(dir, 0o600)?;
        prewrite(&r.log, end)?;
        Ok((r, end))
    }

    #[test]
    fn log_prewrite_writes_a_step_only_below_the_low_water_mark() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Io(e.to_string()))?;
        let end = write(dir.path(), &[message("a", 1, "one")])?;
        let r = MessageLog::open(dir.path(), 0o600)?;
        let step = prewrite(&r.log, end)?;
        assert!((PREWRITE_STEP..PREWRITE_STEP + PAGE_BYTES).contains(&step));
        assert_eq!(prewrite(&r.log, end)?, 0, "enough room: nothing written");
        let len = file_len(dir.path())?;
        assert_eq!(len, end + step);
        assert_eq!(len % PAGE_BYTES, 0);
        // Records use up the room past the low-water mark: the next step follows.
        let used = len - PREWRITE_LOW_WATER + 1;
        assert_eq!(prewrite(&r.log, used)?, PREWRITE_STEP);
        assert_eq!(file_len(dir.path())?, len + PREWRITE_STEP);
        Ok(())
    }

    #[test]
    fn log_prewritten_zeros_are_kept_at_open_and_appends_land_before_them() -> Result<(), StoreError>
    {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Io(e.to_string()))?;
        let (r, end) = prewritten(dir.path(), &[message("a", 1, "one")])?;
        drop(r);
        let len = file_len(dir.path())?;
        assert!(len > end);
        // Reopen: the zeros are the tail, not a torn batch; nothing is cut.
        let end2 = write(dir.path(), &[message("a", 2, "two")])?;
        assert_eq!(file_len(dir.path())?, len, "the append wrote into the tail");
        let r = MessageLog::open(dir.path(), 0o600)?;
        assert_eq!(r.end, end2);
        assert_eq!(r.index.last("a").map(|l| l.0), Some(2));
        assert_eq!(file_len(dir.path())?, len);
        Ok(())
    }

    #[test]
    fn log_torn_record_before_prewritten_zeros_is_dropped() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Io(e.to_string()))?;
        let (r, end) = prewritten(dir.path(), &[message("a", 1, "kept")])?;
        // The last batch reached the disk without its last page: its tail reads as zeros.
        let mut torn = Vec::new();
        encode(&message("a", 2, &"z".repeat(5000)), &mut torn)?;
        let cut = torn.len() - 4096;
        r.log
            .file
            .write_all_at(torn.get(..cut).unwrap_or_default(), end)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        drop(r);
        let r = MessageLog::open(dir.path(), 0o600)?;
        assert_eq!(r.end, end);
        assert_eq!(r.index.last("a").map(|l| l.0), Some(1));
        assert_eq!(file_len(dir.path())?, end, "the torn batch is cut off");
        Ok(())
    }

    #[test]
    fn log_bytes_far_into_the_zero_tail_are_corrupt() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Io(e.to_string()))?;
        let (r, end) = prewritten(dir.path(), &[message("a", 1, "one")])?;
        // No batch can put data this far past the last record: damage, not a torn write. (The
        // byte lands past the pre-written step: the hole before it reads as zeros, as on disk.)
        r.log
            .file
            .write_all_at(b"X", end + MAX_TORN_BYTES + 1)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        drop(r);
        assert_opens_corrupt(dir.path());
        Ok(())
    }
}
