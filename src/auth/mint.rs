//! Minting access and refresh tokens with the gateway's own key.
//!
//! # Invariants
//!
//! - A minted token verifies with the same `Keys` at any `now` in `[iat, exp)`: it carries every
//!   claim `verify` requires, `iss`/`aud` when configured, and the signing key's `kid` header.
//! - `iat = now_unix`, `exp = now_unix + ttl_s`; no clock is read here (time is passed in).
//! - `jti` is always fresh random; `sid` is fresh random unless the caller continues a login
//!   session (refresh rotation, `renew`) and passes it.
//!
//! # Implementation
//!
//! The payload is built as a `JWTClaims` literal (not `Claims::create`, which reads the clock)
//! and signed by jwt-simple. Random ids are 128 bits from the thread CSPRNG, hex-encoded.

use jwt_simple::prelude::{EdDSAKeyPairLike, JWTClaims, MACLike, UnixTimeStamp};
use jwt_simple::reexports::ct_codecs::{Encoder, Hex};
use jwt_simple::reexports::rand::{self, Rng};
use serde::Serialize;

use super::keys::Signer;
use super::{Keys, Role, TokenType};

/// Default access-token lifetime: 15 minutes, a hard limit (SPEC section 3).
pub const ACCESS_TTL_S: u64 = 900;

/// Default refresh-token lifetime: 7 days (SPEC section 3).
pub const REFRESH_TTL_S: u64 = 7 * 24 * 3600;

/// Longest lifetime `mint` will sign: 30 days. Bounds how long a revocation must be kept and
/// keeps `exp` far inside the range jwt-simple's timestamps represent exactly (below 2^32 s).
pub const MAX_TTL_S: u64 = 30 * 24 * 3600;

/// Bytes of randomness in a generated `sid` or `jti` (128 bits: collisions are not a concern).
const RANDOM_ID_BYTES: usize = 16;

/// What to mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    /// The user id (`sub`).
    pub sub: String,
    /// The user's role.
    pub role: Role,
    /// The login session to continue; `None` starts a new one (random sid).
    pub sid: Option<String>,
    /// Access or refresh.
    pub typ: TokenType,
    /// Lifetime in seconds, 1 ..= [`MAX_TTL_S`] (usually [`ACCESS_TTL_S`] or [`REFRESH_TTL_S`]).
    pub ttl_s: u64,
    /// The caller's clock, unix seconds: becomes `iat`.
    pub now_unix: u64,
}

/// Why a token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MintError {
    /// Only a public key is configured: tokens come from the hospital identity provider
    /// (operator's configuration).
    VerifyOnly,
    /// `ttl_s` is 0 or above [`MAX_TTL_S`], or `now + ttl` overflows (caller's request).
    TtlOutOfRange { ttl_s: u64 },
    /// `sub` or a given `sid` is empty (caller's request).
    EmptyField { field: &'static str },
    /// The signing library failed (ours: should not happen).
    Sign,
}

impl std::fmt::Display for MintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MintError::VerifyOnly => f.write_str(
                "this gateway has only a public key (verify only): it cannot mint tokens",
            ),
            MintError::TtlOutOfRange { ttl_s } => {
                write!(f, "token lifetime {ttl_s} s is outside 1..={MAX_TTL_S} s")
            }
            MintError::EmptyField { field } => write!(f, "token claim {field} must not be empty"),
            MintError::Sign => f.write_str("signing the token failed"),
        }
    }
}

impl std::error::Error for MintError {}

/// Our private claims on the wire.
#[derive(Serialize)]
struct MintedCustom<'a> {
    role: Role,
    sid: &'a str,
    typ: TokenType,
}

/// A fresh random id: [`RANDOM_ID_BYTES`] bytes, lowercase hex.
pub fn random_id() -> String {
    let mut bytes = [0u8; RANDOM_ID_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    // Hex-encoding a fixed small buffer into a String cannot fail.
    Hex::encode_to_string(bytes).unwrap_or_default()
}

impl Keys {
    /// Signs a token for `req` with the primary key.
    pub fn mint(&self, req: MintRequest) -> Result<String, MintError> {
        let signer = self.signer.as_ref().ok_or(MintError::VerifyOnly)?;
        if req.ttl_s == 0 || req.ttl_s > MAX_TTL_S {
            return Err(MintError::TtlOutOfRange { ttl_s: req.ttl_s });
        }
        let exp = req
            .now_unix
            .checked_add(req.ttl_s)
            .ok_or(MintError::TtlOutOfRange { ttl_s: req.ttl_s })?;
        if req.sub.is_empty() {
            return Err(MintError::EmptyField { field: "sub" });
        }
        let sid = match req.sid {
            Some(sid) if sid.is_empty() => return Err(MintError::EmptyField { field: "sid" }),
            Some(sid) => sid,
            None => random_id(),
        };
        let claims = JWTClaims {
            issued_at: Some(UnixTimeStamp::from_secs(req.now_unix)),
            expires_at: Some(UnixTimeStamp::from_secs(exp)),
            invalid_before: None,
            issuer: self.issuer.clone(),
            subject: Some(req.sub),
            audiences: self.audience.clone().map(Into::into),
            jwt_id: Some(random_id()),
            nonce: None,
            custom: MintedCustom {
                role: req.role,
                sid: &sid,
                typ: req.typ,
            },
        };
        let signed = match signer {
            Signer::Hs(key) => key.authenticate(claims),
            Signer::Ed(key) => key.sign(claims),
        };
        signed.map_err(|e| {
            log::error!("jwt mint failed alg={} error={e}", self.alg.name());
            MintError::Sign
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_id_is_32_hex_and_fresh() {
        let a = random_id();
        let b = random_id();
        assert_eq!(a.len(), RANDOM_ID_BYTES * 2);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
