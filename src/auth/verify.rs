//! Token verification: the ONE function every entry point (HTTP, upgrade, `auth`, `renew`,
//! refresh) calls, and the reasons it refuses.
//!
//! # Invariants
//!
//! - A token is accepted only if every check passes. The first failure is the reported reason,
//!   in this order: size; structure and header (`malformed`); `alg` (`none`, then anything but
//!   the configured one); `kid`; signature; then, on the signed payload, `exp < now`, `iss`,
//!   `aud` (in jwt-simple), presence and types of all claims, `exp <= now` (hard: no leeway),
//!   `nbf`/`iat` (at most [`MAX_CLOCK_SKEW_S`] ahead), `typ`, and last the sid's revocation.
//!   Nothing of the payload is parsed before the signature is checked.
//! - Time is `now_unix` from the caller; jwt-simple never reads the clock for a decision here.
//! - An [`AuthError`] never holds the token or any part of it.
//!
//! # Implementation
//!
//! `Token::decode_metadata` reads `alg`/`kid` from the unverified header to refuse `none` and
//! foreign algorithms and to pick the key. jwt-simple then checks the signature, and `iss`/`aud`,
//! with `VerificationOptions { accept_future: true, time_tolerance: 0, artificial_time: now }`:
//! its own future checks are off (ours allow 60 s) and its expiry check (`now <= exp` with zero
//! tolerance) is weaker than ours, so ours decides. Our own claims (`role`, `sid`, `typ`) are read
//! as raw JSON values so that an ill-typed one is `missing_claim`, not a parse failure.

use std::collections::HashSet;

use jwt_simple::prelude::{
    Duration, EdDSAPublicKeyLike, JWTClaims, MACLike, Token, UnixTimeStamp, VerificationOptions,
};
use jwt_simple::reexports::serde_json::{self, Value};
use jwt_simple::JWTError;
use serde::Deserialize;

use super::keys::Verifier;
use super::{Claims, Keys, Revocations, Role, TokenType};

/// Largest token accepted, in bytes: our tokens are ~350 bytes; 8 KiB bounds the work an
/// unauthenticated client can make us do (base64 and JSON decoding) before the signature check.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// How far in the future `nbf` or `iat` may be: kiosk clocks drift, and the spec allows at most
/// 60 s of leeway. (`exp` gets none.)
pub const MAX_CLOCK_SKEW_S: u64 = 60;

/// Why a token was refused: always the client's fault. Every variant maps to HTTP 401 or close
/// 1008 (the caller maps); `reason()` labels `consult_edge_auth_failures_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// Not a compact JWS of three base64url parts with JSON header and payload.
    Malformed,
    /// `alg: none` (unsigned).
    AlgNone,
    /// Another algorithm than the configured one.
    WrongAlg,
    /// A `kid` that names none of the configured keys.
    UnknownKid,
    /// The signature does not match the header and payload.
    BadSignature,
    /// `exp <= now`.
    Expired,
    /// `nbf` or `iat` more than [`MAX_CLOCK_SKEW_S`] in the future.
    NotYetValid,
    /// `iss` absent or not the configured issuer.
    WrongIssuer,
    /// `aud` absent or not including the configured audience.
    WrongAudience,
    /// An access token where a refresh token is expected, or the reverse.
    WrongType,
    /// One of `sub`, `role`, `sid`, `jti`, `iat`, `exp`, `typ` absent, empty or ill-typed, or
    /// an unknown role or type.
    MissingClaim,
    /// The token's sid has been revoked (logout, refresh reuse, admin).
    Revoked,
}

impl AuthError {
    /// Stable metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::TooLarge => "too_large",
            AuthError::Malformed => "malformed",
            AuthError::AlgNone => "alg_none",
            AuthError::WrongAlg => "wrong_alg",
            AuthError::UnknownKid => "unknown_kid",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::WrongType => "wrong_type",
            AuthError::MissingClaim => "missing_claim",
            AuthError::Revoked => "revoked",
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            AuthError::TooLarge => "token too large",
            AuthError::Malformed => "token malformed",
            AuthError::AlgNone => "unsigned token (alg none)",
            AuthError::WrongAlg => "token algorithm not accepted",
            AuthError::UnknownKid => "token signed by an unknown key",
            AuthError::BadSignature => "token signature invalid",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid",
            AuthError::WrongIssuer => "token issuer not accepted",
            AuthError::WrongAudience => "token audience not accepted",
            AuthError::WrongType => "wrong token type",
            AuthError::MissingClaim => "token claim missing or invalid",
            AuthError::Revoked => "token revoked",
        };
        f.write_str(text)
    }
}

impl std::error::Error for AuthError {}

/// Our private claims as raw JSON, so that a wrong type is ours to report.
#[derive(Debug, Default, Deserialize)]
struct RawCustom {
    #[serde(default)]
    role: Option<Value>,
    #[serde(default)]
    sid: Option<Value>,
    #[serde(default)]
    typ: Option<Value>,
}

impl Keys {
    /// Verifies `token` as a token of type `expect` at `now_unix` (see the module doc for the
    /// checks and their order); returns its claims, owned.
    pub fn verify(
        &self,
        token: &str,
        expect: TokenType,
        now_unix: u64,
        revoked: &Revocations,
    ) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let meta = Token::decode_metadata(token).map_err(|_| AuthError::Malformed)?;
        let alg = meta.algorithm();
        if alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgNone);
        }
        if alg != self.alg.name() {
            return Err(AuthError::WrongAlg);
        }
        let key = self
            .verifier_for(meta.key_id())
            .ok_or(AuthError::UnknownKid)?;
        let options = self.options(now_unix);
        let verified = match key {
            Verifier::Hs(k) => k.verify_token::<RawCustom>(token, Some(options)),
            Verifier::Ed(k) => k.verify_token::<RawCustom>(token, Some(options)),
        };
        let raw = verified.map_err(|e| classify(&e))?;
        let nbf = raw.invalid_before.map(|t| t.as_secs());
        let claims = claims_from(raw)?;
        check_times(&claims, nbf, now_unix)?;
        if claims.typ != expect {
            return Err(AuthError::WrongType);
        }
        if revoked.is_revoked(&claims.sid, now_unix) {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    /// jwt-simple options: signature and `iss`/`aud` only; times are ours (see module doc).
    fn options(&self, now_unix: u64) -> VerificationOptions {
        VerificationOptions {
            accept_future: true,
            time_tolerance: Some(Duration::from_secs(0)),
            artificial_time: Some(UnixTimeStamp::from_secs(now_unix)),
            max_token_length: Some(MAX_TOKEN_BYTES),
            allowed_issuers: self.issuer.as_ref().map(|i| HashSet::from([i.clone()])),
            allowed_audiences: self.audience.as_ref().map(|a| HashSet::from([a.clone()])),
            ..VerificationOptions::default()
        }
    }
}

/// Maps a jwt-simple failure (after our own header checks passed) to its reason.
fn classify(e: &jwt_simple::Error) -> AuthError {
    if let Some(jwt) = e.downcast_ref::<JWTError>() {
        return match jwt {
            JWTError::InvalidAuthenticationTag | JWTError::InvalidSignature => {
                AuthError::BadSignature
            }
            JWTError::TokenHasExpired => AuthError::Expired,
            JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing => {
                AuthError::WrongIssuer
            }
            JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing => {
                AuthError::WrongAudience
            }
            JWTError::TokenTooLong => AuthError::TooLarge,
            _ => AuthError::Malformed,
        };
    }
    // The header already parsed in `decode_metadata`, so a JSON *data* error here comes from the
    // signed payload: a standard claim (`sub`, `jti`, `iat`, `exp`...) of the wrong type.
    if let Some(json) = e.downcast_ref::<serde_json::Error>() {
        if json.classify() == serde_json::error::Category::Data {
            return AuthError::MissingClaim;
        }
    }
    AuthError::Malformed
}

/// A non-empty string claim, or `MissingClaim`.
fn required_string(value: Option<String>) -> Result<String, AuthError> {
    value
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::MissingClaim)
}

/// A raw JSON claim that must be a string; returns it borrowed.
fn raw_str(value: &Option<Value>) -> Result<&str, AuthError> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(AuthError::MissingClaim),
    }
}

/// Our [`Claims`] from a signature-checked payload: every claim present and well-typed.
fn claims_from(raw: JWTClaims<RawCustom>) -> Result<Claims, AuthError> {
    let role = Role::parse(raw_str(&raw.custom.role)?).ok_or(AuthError::MissingClaim)?;
    let typ = TokenType::parse(raw_str(&raw.custom.typ)?).ok_or(AuthError::MissingClaim)?;
    let sid = raw_str(&raw.custom.sid)?.to_owned();
    Ok(Claims {
        sub: required_string(raw.subject)?,
        role,
        sid,
        jti: required_string(raw.jwt_id)?,
        iat: raw.issued_at.ok_or(AuthError::MissingClaim)?.as_secs(),
        exp: raw.expires_at.ok_or(AuthError::MissingClaim)?.as_secs(),
        typ,
    })
}

/// `exp` is a hard limit; `nbf` and `iat` may be at most [`MAX_CLOCK_SKEW_S`] ahead of `now`.
fn check_times(claims: &Claims, nbf: Option<u64>, now_unix: u64) -> Result<(), AuthError> {
    if claims.exp <= now_unix {
        return Err(AuthError::Expired);
    }
    let latest_start = now_unix.saturating_add(MAX_CLOCK_SKEW_S);
    if claims.iat > latest_start || nbf.is_some_and(|nbf| nbf > latest_start) {
        return Err(AuthError::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iat: u64, exp: u64) -> Claims {
        Claims {
            sub: "u".into(),
            role: Role::Patient,
            sid: "s".into(),
            jti: "j".into(),
            iat,
            exp,
            typ: TokenType::Access,
        }
    }

    #[test]
    fn times_exp_equal_now_is_expired() {
        assert_eq!(
            check_times(&claims(0, 100), None, 100),
            Err(AuthError::Expired)
        );
        assert_eq!(check_times(&claims(0, 100), None, 99), Ok(()));
    }

    #[test]
    fn times_skew_boundary_sixty_accepted_sixty_one_refused() {
        let now = 1_000;
        assert_eq!(check_times(&claims(now + 60, now + 900), None, now), Ok(()));
        assert_eq!(
            check_times(&claims(now + 61, now + 900), None, now),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(
            check_times(&claims(now, now + 900), Some(now + 60), now),
            Ok(())
        );
        assert_eq!(
            check_times(&claims(now, now + 900), Some(now + 61), now),
            Err(AuthError::NotYetValid)
        );
    }

    #[test]
    fn auth_error_reasons_are_distinct() {
        let all = [
            AuthError::TooLarge,
            AuthError::Malformed,
            AuthError::AlgNone,
            AuthError::WrongAlg,
            AuthError::UnknownKid,
            AuthError::BadSignature,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::WrongIssuer,
            AuthError::WrongAudience,
            AuthError::WrongType,
            AuthError::MissingClaim,
            AuthError::Revoked,
        ];
        let reasons: HashSet<&str> = all.iter().map(AuthError::reason).collect();
        assert_eq!(reasons.len(), all.len());
    }
}
