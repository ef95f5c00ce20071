//! Where each stored message is in the message log: per consultation, seq → (offset, length).
//!
//! # Invariants
//! 1. For every consultation, the entries are seqs `1..=n` in order, dense: [`MessageIndex::push`]
//!    refuses any other seq, so the index cannot describe a gap or a duplicate.
//! 2. An entry is published only after the record it points at was written and fdatasync'ed
//!    (the writer's job): a reader that finds a location can read a whole record there.
//!
//! # Implementation
//! A location packs the offset (40 bits: 1 TiB of log) and the record length (24 bits; records
//! are at most `MAX_RECORD_BYTES`) into one `u64`, so an open consultation's index costs 8 bytes
//! per message. The writer thread pushes; the executor thread reads under a `RwLock` for the
//! time it takes to copy a page of locations.

use std::collections::HashMap;

use super::records::Consultation;

const LEN_BITS: u32 = 24;
const LEN_MASK: u64 = (1 << LEN_BITS) - 1;
/// Largest offset a location can hold.
pub(crate) const MAX_OFFSET: u64 = (1 << (64 - LEN_BITS)) - 1;

/// Where one record is in the log file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub offset: u64,
    pub len: usize,
}

impl Loc {
    fn pack(self) -> Option<u64> {
        let len = u64::try_from(self.len).ok().filter(|l| *l <= LEN_MASK)?;
        (self.offset <= MAX_OFFSET).then_some((self.offset << LEN_BITS) | len)
    }

    fn unpack(packed: u64) -> Loc {
        Loc {
            offset: packed >> LEN_BITS,
            len: (packed & LEN_MASK) as usize,
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    /// `locs[i]` is the packed location of seq `i + 1`.
    locs: Vec<u64>,
    /// ts_ms of the newest message.
    last_ts_ms: u64,
}

/// Every consultation's message locations.
#[derive(Debug, Default)]
pub(crate) struct MessageIndex {
    by_consultation: HashMap<String, Entries>,
    /// Messages indexed in all.
    total: u64,
}

impl MessageIndex {
    /// Records seq `seq` of `consultation` at `loc` (invariant 1).
    pub(crate) fn push(
        &mut self,
        consultation: &str,
        seq: u64,
        loc: Loc,
        ts_ms: u64,
    ) -> Result<(), &'static str> {
        let packed = loc.pack().ok_or("location out of range")?;
        // One lookup on the hot path; the key is copied only for a consultation's first message.
        let entries = match self.by_consultation.get_mut(consultation) {
            Some(e) if seq == e.locs.len() as u64 + 1 => e,
            None if seq == 1 => self
                .by_consultation
                .entry(consultation.to_owned())
                .or_default(),
            _ => return Err("seq out of order"),
        };
        entries.locs.push(packed);
        entries.last_ts_ms = ts_ms;
        self.total += 1;
        Ok(())
    }

    /// Seq and ts_ms of the newest message of `consultation`; `None` if it has none.
    pub(crate) fn last(&self, consultation: &str) -> Option<(u64, u64)> {
        let e = self.by_consultation.get(consultation)?;
        Some((e.locs.len() as u64, e.last_ts_ms))
    }

    /// Location of one message.
    pub(crate) fn get(&self, consultation: &str, seq: u64) -> Option<Loc> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        let e = self.by_consultation.get(consultation)?;
        e.locs.get(i).map(|p| Loc::unpack(*p))
    }

    /// Seqs and locations of the messages with seq > `after`, ascending, at most `limit`.
    pub(crate) fn after(&self, consultation: &str, after: u64, limit: usize) -> Vec<(u64, Loc)> {
        let Some(e) = self.by_consultation.get(consultation) else {
            return Vec::new();
        };
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        e.locs
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, p)| (i as u64 + 1, Loc::unpack(*p)))
            .collect()
    }

    /// Sets `last_seq` and `last_message_at_ms` of a record from the log (they are not kept in
    /// the record on disk: rewriting it per message would double the writes).
    pub(crate) fn fill(&self, c: &mut Consultation) {
        if let Some((seq, ts)) = self.last(&c.id) {
            c.last_seq = seq;
            c.last_message_at_ms = ts;
        }
    }

    /// Messages indexed in all.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_push_dense_seqs_only_and_ranges_read_back() {
        let mut ix = MessageIndex::default();
        let loc = |o| Loc { offset: o, len: 40 };
        assert_eq!(ix.push("a", 1, loc(0), 10), Ok(()));
        assert_eq!(ix.push("a", 3, loc(40), 11), Err("seq out of order"));
        assert_eq!(ix.push("a", 2, loc(40), 12), Ok(()));
        assert_eq!(ix.push("b", 2, loc(80), 13), Err("seq out of order"));
        assert_eq!(ix.last("a"), Some((2, 12)));
        assert_eq!(ix.last("b"), None);
        assert_eq!(ix.after("a", 1, 10), vec![(2, loc(40))]);
        assert_eq!(ix.after("a", 0, 1), vec![(1, loc(0))]);
        assert!(ix.after("a", u64::MAX, 10).is_empty());
        assert_eq!(ix.get("a", 2), Some(loc(40)));
        assert_eq!(ix.get("a", 0), None);
        assert_eq!(ix.total(), 2);
    }

    #[test]
    fn index_location_out_of_range_is_refused() {
        let mut ix = MessageIndex::default();
        let far = Loc {
            offset: MAX_OFFSET + 1,
            len: 1,
        };
        assert!(ix.push("a", 1, far, 0).is_err());
        let long = Loc {
            offset: 0,
            len: 1 << 24,
        };
        assert!(ix.push("a", 1, long, 0).is_err());
        let edge = Loc {
            offset: MAX_OFFSET,
            len: (1 << 24) - 1,
        };
        assert_eq!(ix.push("a", 1, edge, 0), Ok(()));
        assert_eq!(ix.get("a", 1), Some(edge));
    }
}
