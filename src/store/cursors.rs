//! The writer's view of each open consultation it appends to: state, next seq, and which
//! (sender, client_id) keys it already stored.
//!
//! # Invariants
//! 1. A cached cursor equals the durable state plus the ops already applied in the current
//!    batch. When a batch fails, every cursor is dropped ([`Cursors::clear`]) and reloaded from
//!    the durable state on next use, so a failed batch leaves no trace here either.
//! 2. Only open consultations are cached; a closed one is answered from the durable state
//!    (rare: sessions refuse sends to closed consultations before they reach the store).
//! 3. `dedupe` maps a hash of (from, client_id) to the seq of the first message stored under
//!    it. A hash is never trusted alone: the message at that seq is read and compared, and on a
//!    mismatch (a collision) the consultation's messages are scanned.
//!
//! # Implementation
//! Owned by the writer thread only: no lock. Loading a cursor reads the consultation's record
//! and every message it has (to rebuild `dedupe`): once per consultation per writer lifetime,
//! i.e. after a restart.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::OnceLock;

use super::records::ConsultState;

/// One consultation's append state.
#[derive(Debug)]
pub(crate) struct Cursor {
    /// Open, or closed by an op of the current batch.
    pub state: ConsultState,
    /// Seq of the newest message, staged ones included; 0 while there is none.
    pub last_seq: u64,
    /// ts_ms of that message (the creation time while there is none).
    pub last_ts_ms: u64,
    /// hash(from, client_id) → seq (invariant 3).
    pub dedupe: DedupeMap,
}

/// A key of the dedupe map is already a random-keyed hash: hashing it again would only cost.
#[derive(Debug, Default)]
pub(crate) struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are u64); fold anything else in all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// hash(from, client_id) → seq.
pub(crate) type DedupeMap = HashMap<u64, u64, BuildHasherDefault<KeyIsHash>>;

/// Cursors of the open consultations appended to since the writer started.
#[derive(Debug, Default)]
pub(crate) struct Cursors {
    map: HashMap<String, Cursor>,
    /// Consultations closed by an op of the current batch: their cursors go at its commit.
    /// Kept apart so a commit touches only them, not every open consultation's cursor (a
    /// `retain` over all of them on every commit was 1.4% of the gateway's CPU samples at
    /// 20,000 msgs/s over 500 consultations, and grows with the consultations open).
    closed: Vec<String>,
}

impl Cursors {
    pub(crate) fn get_mut(&mut self, consultation: &str) -> Option<&mut Cursor> {
        self.map.get_mut(consultation)
    }

    /// Caches the cursor of an open consultation (invariant 2).
    pub(crate) fn insert(&mut self, consultation: &str, cursor: Cursor) -> &mut Cursor {
        self.map.entry(consultation.to_owned()).or_insert(cursor)
    }

    /// A close of `consultation` was applied in the current batch: its cached cursor, if any,
    /// refuses later appends of the batch and is forgotten at the commit.
    pub(crate) fn close(&mut self, consultation: &str) -> Option<&Cursor> {
        let cursor = self.map.get_mut(consultation)?;
        if cursor.state == ConsultState::Open {
            cursor.state = ConsultState::Closed;
            self.closed.push(consultation.to_owned());
        }
        Some(cursor)
    }

    /// Forgets the cursors of consultations that a committed batch closed (invariant 2).
    pub(crate) fn drop_closed(&mut self) {
        for id in self.closed.drain(..) {
            self.map.remove(&id);
        }
    }

    /// Forgets everything (invariant 1).
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.closed.clear();
    }
}

/// Keys of the dedupe hash: random per process, so a client cannot craft client_ids that
/// collide with another message's and force the slow scan of invariant 3 on every send.
static HASH_KEYS: OnceLock<RandomState> = OnceLock::new();

/// The dedupe hash of a (sender, client_id) key. Length-prefixed so that ("ab", "c") and
/// ("a", "bc") differ. Stable within a run, which is all invariant 3 needs (cursors are
/// rebuilt from the log after a restart).
pub(crate) fn key_hash(from: &str, client_id: &str) -> u64 {
    let mut h = HASH_KEYS.get_or_init(RandomState::new).build_hasher();
    from.len().hash(&mut h);
    from.hash(&mut h);
    client_id.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_key_hash_separates_field_boundaries() {
        assert_ne!(key_hash("ab", "c"), key_hash("a", "bc"));
        assert_eq!(key_hash("p1", "c-1"), key_hash("p1", "c-1"));
    }

    #[test]
    fn cursors_drop_closed_forgets_only_those_closed_in_the_batch() {
        let mut cs = Cursors::default();
        let cursor = || Cursor {
            state: ConsultState::Open,
            last_seq: 0,
            last_ts_ms: 0,
            dedupe: DedupeMap::default(),
        };
        cs.insert("open", cursor());
        cs.insert("closing", cursor());
        let closed = cs.close("closing").map(|c| c.state);
        assert_eq!(closed, Some(ConsultState::Closed));
        assert!(cs.close("never-cached").is_none());
        // Closed but not yet committed: still cached, so the batch's later appends see it.
        assert!(cs.get_mut("closing").is_some());
        cs.drop_closed();
        assert!(cs.get_mut("open").is_some());
        assert!(cs.get_mut("closing").is_none());
        // A second close in a later batch of a re-cached cursor is tracked again.
        cs.insert("closing", cursor());
        assert!(cs.close("closing").is_some());
        cs.clear();
        cs.drop_closed();
        assert!(cs.get_mut("open").is_none());
        assert!(cs.get_mut("closing").is_none());
    }
}
