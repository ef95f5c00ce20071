//! The store's error: whose fault a failed store call is.
//!
//! # Invariants
//! 1. `Display` never contains record contents (message bodies, tokens); only ids the caller
//!    already holds and redb's own description of the failure.
//! 2. `NotFound` and `Closed` are refusals of one op: they never fail the other ops of its batch.
//!
//! # Implementation
//! redb's errors are folded here, in one place: corruption becomes `Corrupt`, everything else
//! (I/O, a poisoned transaction, a second open of the same file) becomes `Io`.

use std::fmt;

/// Why a store call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The caller's fault: the consultation does not exist.
    NotFound,
    /// The caller's fault: the consultation is closed and takes no more messages.
    Closed,
    /// The file's fault: it is not a redb database, it is truncated or damaged, or a stored
    /// value does not decode. Not retryable; an operator must look at the data dir.
    Corrupt(String),
    /// The machine's fault: a file or commit error (disk full, I/O error, fault injection).
    /// The whole batch it happened in was rolled back.
    Io(String),
    /// Our fault: the writer thread is gone (shutdown, or it panicked).
    Stopped,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound => f.write_str("store: consultation not found"),
            StoreError::Closed => f.write_str("store: consultation closed"),
            StoreError::Corrupt(why) => write!(f, "store: corrupt database: {why}"),
            StoreError::Io(why) => write!(f, "store: i/o error: {why}"),
            StoreError::Stopped => f.write_str("store: writer stopped"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Corrupted(why) => StoreError::Corrupt(why),
            other => StoreError::Io(other.to_string()),
        }
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Corrupted(why) => StoreError::Corrupt(why),
            redb::Error::UpgradeRequired(v) => {
                StoreError::Corrupt(format!("file format version {v} needs an upgrade"))
            }
            other => StoreError::Io(other.to_string()),
        }
    }
}

/// Every specific redb error folds through `redb::Error`, so the mapping above is the only one.
macro_rules! via_redb_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::from(redb::Error::from(e))
            }
        }
    )*};
}

via_redb_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError
);
