//! The tables of `consult-edge.redb` and every operation on them, as plain functions of a
//! transaction.
//!
//! # Invariants
//! 1. A write op that refuses (`NotFound`, `Closed`) or finds a value that does not decode
//!    (`Corrupt`) returns before its first write, so its batch can still commit without it.
//!    Only an `Io` error may leave an op half-written, and the writer aborts the whole batch then.
//! 2. `BY_USER` holds exactly one `(user, created_at_ms, id)` entry per member of each row of
//!    `CONSULTATIONS`; `OPEN` holds exactly the ids whose state is open.
//! 3. Messages are not here: they are in the message log (`super::msglog`). A consultation's
//!    stored `last_seq`/`last_message_at_ms` stay as created; readers fill them from the log's
//!    index.
//! 4. `REFRESH_BY_EXP` mirrors `REFRESH_USED`, `REVOKED_BY_UNTIL` mirrors `REVOKED`: one index
//!    entry per row, with the row's current time, so purging is a range scan.
//!
//! # Implementation
//! Keys are redb tuples, compared element by element, so "all rows of one user" is the range
//! `(user, 0, "")..(user + "\0", 0, "")`: no string sorts strictly between `user` and
//! `user + "\0"`. Reads and writes share these functions through redb's `ReadableTable`.

use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::records::{decode, encode, new_id, ConsultState, Consultation, PurgeCount, RefreshUse};
use super::StoreError;

/// id → encoded [`Consultation`].
const CONSULTATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("consultations");
/// (member user id, created_at_ms, consultation id) → (): a member's consultations in order.
const BY_USER: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("by_user");
/// ids of open consultations → (): what needs timers after a restart.
const OPEN: TableDefinition<&str, ()> = TableDefinition::new("open");
/// used refresh jti → (sid, exp unix s): kept until exp, then purgeable.
const REFRESH_USED: TableDefinition<&str, (&str, u64)> = TableDefinition::new("refresh_used");
/// (exp unix s, jti) → (): index of `REFRESH_USED` by expiry.
const REFRESH_BY_EXP: TableDefinition<(u64, &str), ()> = TableDefinition::new("refresh_by_exp");
/// revoked sid → until unix s (no token of the sid is valid after it).
const REVOKED: TableDefinition<&str, u64> = TableDefinition::new("revoked");
/// (until unix s, sid) → (): index of `REVOKED` by expiry.
const REVOKED_BY_UNTIL: TableDefinition<(u64, &str), ()> = TableDefinition::new("revoked_by_until");

/// Most expired entries of each kind one purge removes: keeps one purge from turning a group
/// commit into a long transaction after a long downtime; the caller purges again next period.
pub const MAX_PURGE_PER_CALL: usize = 10_000;

/// Creates every table, so that reads never meet a missing one.
pub(crate) fn create_all(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(CONSULTATIONS)?;
    txn.open_table(BY_USER)?;
    txn.open_table(OPEN)?;
    txn.open_table(REFRESH_USED)?;
    txn.open_table(REFRESH_BY_EXP)?;
    txn.open_table(REVOKED)?;
    txn.open_table(REVOKED_BY_UNTIL)?;
    Ok(())
}

fn get_consultation<T>(table: &T, id: &str) -> Result<Option<Consultation>, StoreError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    match table.get(id)? {
        Some(guard) => decode("consultation", guard.value()).map(Some),
        None => Ok(None),
    }
}

fn put_consultation(table: &mut Table<&str, &[u8]>, c: &Consultation) -> Result<(), StoreError> {
    table.insert(c.id.as_str(), encode(c)?.as_slice())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writes: each runs inside the writer's batch transaction.
// ---------------------------------------------------------------------------------------------

pub(crate) fn create_consultation(
    txn: &WriteTransaction,
    patient: &str,
    doctor: &str,
    now_ms: u64,
) -> Result<Consultation, StoreError> {
    let mut consultations = txn.open_table(CONSULTATIONS)?;
    // 128 random bits collide with negligible probability; checking keeps invariant 2 exact.
    let mut id = new_id();
    while consultations.get(id.as_str())?.is_some() {
        id = new_id();
    }
    let c = Consultation {
        id,
        patient: patient.to_owned(),
        doctor: doctor.to_owned(),
        state: ConsultState::Open,
        created_at_ms: now_ms,
        last_seq: 0,
        last_message_at_ms: now_ms,
        closed_reason: None,
        closed_at_ms: None,
    };
    put_consultation(&mut consultations, &c)?;
    let mut by_user = txn.open_table(BY_USER)?;
    by_user.insert((patient, now_ms, c.id.as_str()), ())?;
    by_user.insert((doctor, now_ms, c.id.as_str()), ())?;
    txn.open_table(OPEN)?.insert(c.id.as_str(), ())?;
    Ok(c)
}

pub(crate) fn close_consultation(
    txn: &WriteTransaction,
    id: &str,
    reason: &str,
    now_ms: u64,
) -> Result<Consultation, StoreError> {
    let mut consultations = txn.open_table(CONSULTATIONS)?;
    let mut c = get_consultation(&consultations, id)?.ok_or(StoreError::NotFound)?;
    if c.state == ConsultState::Closed {
        return Ok(c);
    }
    c.state = ConsultState::Closed;
    c.closed_reason = Some(reason.to_owned());
    c.closed_at_ms = Some(now_ms);
    put_consultation(&mut consultations, &c)?;
    txn.open_table(OPEN)?.remove(id)?;
    Ok(c)
}

pub(crate) fn use_refresh(
    txn: &WriteTransaction,
    jti: &str,
    sid: &str,
    exp_unix: u64,
) -> Result<RefreshUse, StoreError> {
    let mut used = txn.open_table(REFRESH_USED)?;
    if used.get(jti)?.is_some() {
        return Ok(RefreshUse::Reused);
    }
    used.insert(jti, (sid, exp_unix))?;
    txn.open_table(REFRESH_BY_EXP)?
        .insert((exp_unix, jti), ())?;
    Ok(RefreshUse::Fresh)
}

pub(crate) fn revoke_sid(
    txn: &WriteTransaction,
    sid: &str,
    until_unix: u64,
) -> Result<(), StoreError> {
    let mut revoked = txn.open_table(REVOKED)?;
    let previous = revoked.get(sid)?.map(|g| g.value());
    let mut by_until = txn.open_table(REVOKED_BY_UNTIL)?;
    match previous {
        Some(prev) if prev >= until_unix => return Ok(()),
        Some(prev) => {
            by_until.remove((prev, sid))?;
        }
        None => {}
    }
    revoked.insert(sid, until_unix)?;
    by_until.insert((until_unix, sid), ())?;
    Ok(())
}

pub(crate) fn purge_expired(
    txn: &WriteTransaction,
    now_unix: u64,
) -> Result<PurgeCount, StoreError> {
    let mut count = PurgeCount::default();
    {
        let mut by_until = txn.open_table(REVOKED_BY_UNTIL)?;
        let mut revoked = txn.open_table(REVOKED)?;
        for (until, sid) in expired(&by_until, now_unix)? {
            by_until.remove((until, sid.as_str()))?;
            revoked.remove(sid.as_str())?;
            count.revocations += 1;
        }
    }
    {
        let mut by_exp = txn.open_table(REFRESH_BY_EXP)?;
        let mut used = txn.open_table(REFRESH_USED)?;
        for (exp, jti) in expired(&by_exp, now_unix)? {
            by_exp.remove((exp, jti.as_str()))?;
            used.remove(jti.as_str())?;
            count.refresh_jtis += 1;
        }
    }
    Ok(count)
}

/// Index entries whose time is strictly before `now` (at most [`MAX_PURGE_PER_CALL`]).
fn expired<T>(index: &T, now: u64) -> Result<Vec<(u64, String)>, StoreError>
where
    T: ReadableTable<(u64, &'static str), ()>,
{
    let mut out = Vec::new();
    for entry in index.range((0u64, "")..(now, ""))?.take(MAX_PURGE_PER_CALL) {
        let (key, _) = entry?;
        let (time, name) = key.value();
        out.push((time, name.to_owned()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Reads: each on its own read transaction, concurrent with the writer.
// ---------------------------------------------------------------------------------------------

pub(crate) fn consultation(
    txn: &ReadTransaction,
    id: &str,
) -> Result<Option<Consultation>, StoreError> {
    get_consultation(&txn.open_table(CONSULTATIONS)?, id)
}

/// [`consultation`] inside the writer's batch: sees what the batch already changed.
pub(crate) fn consultation_for_write(
    txn: &WriteTransaction,
    id: &str,
) -> Result<Option<Consultation>, StoreError> {
    get_consultation(&txn.open_table(CONSULTATIONS)?, id)
}

pub(crate) fn consultations_of(
    txn: &ReadTransaction,
    user: &str,
    limit: usize,
) -> Result<Vec<Consultation>, StoreError> {
    let by_user = txn.open_table(BY_USER)?;
    let consultations = txn.open_table(CONSULTATIONS)?;
    let past_user = format!("{user}\0");
    let mut out = Vec::new();
    for entry in by_user
        .range((user, 0u64, "")..(past_user.as_str(), 0u64, ""))?
        .rev()
        .take(limit)
    {
        let (key, _) = entry?;
        let (_, _, id) = key.value();
        let c = get_consultation(&consultations, id)?
            .ok_or_else(|| StoreError::Corrupt(format!("index names missing consultation={id}")))?;
        out.push(c);
    }
    Ok(out)
}

pub(crate) fn open_consultations(txn: &ReadTransaction) -> Result<Vec<Consultation>, StoreError> {
    let open = txn.open_table(OPEN)?;
    let consultations = txn.open_table(CONSULTATIONS)?;
    let mut out = Vec::new();
    for entry in open.iter()? {
        let (key, _) = entry?;
        let id = key.value();
        let c = get_consultation(&consultations, id)?.ok_or_else(|| {
            StoreError::Corrupt(format!("open index names missing consultation={id}"))
        })?;
        out.push(c);
    }
    Ok(out)
}

pub(crate) fn revocations(txn: &ReadTransaction) -> Result<Vec<(String, u64)>, StoreError> {
    let revoked = txn.open_table(REVOKED)?;
    let mut out = Vec::new();
    for entry in revoked.iter()? {
        let (sid, until) = entry?;
        out.push((sid.value().to_owned(), until.value()));
    }
    Ok(out)
}

pub(crate) fn refresh_used(txn: &ReadTransaction, jti: &str) -> Result<bool, StoreError> {
    Ok(txn.open_table(REFRESH_USED)?.get(jti)?.is_some())
}
