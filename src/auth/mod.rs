//! The token layer: JWT keys, verification, minting and the in-memory revocation set.
//!
//! # Invariants
//!
//! - Every entry point verifies through [`Keys::verify`] and nothing else, so one set of checks
//!   and one set of failure reasons ([`AuthError::reason`]) holds everywhere.
//! - This layer knows no transport: the caller maps [`AuthError`] to HTTP 401 / close 1008.
//!   Only [`Revoker`] touches the store, and it commits a revocation there before it inserts it
//!   in [`Revocations`] and closes the sid's live sessions ([`LiveSessions`]).
//! - Time is always passed in (`now_unix`), never read here.
//!
//! # Implementation
//!
//! - `keys`: loading key files (HS256 secret, Ed25519 PEM), key ids, rotation keys.
//! - `compact`: the public parts of a token (base64url, header) read for `verify`.
//! - `claims`: the owned [`Claims`] of a verified token.
//! - `verify`: [`Keys::verify`] and [`AuthError`].
//! - `mint`: [`Keys::mint`] and [`MintError`].
//! - `revocations`: [`Revocations`], revoked sids for the hot path.
//! - `live`: [`LiveSessions`], the live sockets of each sid.
//! - `revoke`: [`Revoker`], durable-first revocation (logout, refresh reuse).

mod claims;
mod compact;
mod keys;
pub mod live;
mod mint;
pub mod revocations;
pub mod revoke;
mod verify;

pub use claims::{Claims, Role, TokenType};
pub use keys::{
    Algorithm, KeyError, KeySettings, KeySource, Keys, DEFAULT_SECRET_FILE, MAX_KEY_FILE_BYTES,
    MIN_SECRET_BYTES,
};
pub use live::{LiveGuard, LiveSessions};
pub use mint::{random_id, MintError, MintRequest, ACCESS_TTL_S, MAX_TTL_S, REFRESH_TTL_S};
pub use revocations::Revocations;
pub use revoke::Revoker;
pub use verify::{AuthError, MAX_CLOCK_SKEW_S, MAX_TOKEN_BYTES};
