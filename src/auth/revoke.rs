//! Revoking a login session: durable first, then everywhere at once.
//!
//! # Invariants
//! 1. The revocation is committed to the store BEFORE anything else happens: if the commit
//!    fails, nothing is cancelled and the caller reports the failure (the incident's bug was the
//!    other order: logout applied locally while the shared store lagged).
//! 2. Then the in-memory set (every later verify refuses the sid), then every live socket of the
//!    sid is cancelled with `Revoked` (close 4503).

use super::live::LiveSessions;
use super::revocations::Revocations;
use crate::scope::CancelReason;
use crate::store::{Store, StoreError};
use std::rc::Rc;

pub struct Revoker {
    pub store: Store,
    pub revocations: Rc<Revocations>,
    pub live: Rc<LiveSessions>,
}

impl Revoker {
    /// Revokes `sid` until `until_unix` (the latest moment a token of it can be valid).
    /// Returns how many live sessions were closed.
    pub async fn revoke(
        &self,
        sid: &str,
        until_unix: u64,
        why: &'static str,
    ) -> Result<usize, StoreError> {
        self.store.revoke_sid(sid, until_unix).await?;
        self.revocations.insert(sid, until_unix);
        let closed = self.live.cancel_sid(sid, CancelReason::Revoked);
        log::info!("event=sid_revoked why={why} sessions_closed={closed} until={until_unix}");
        Ok(closed)
    }
}
