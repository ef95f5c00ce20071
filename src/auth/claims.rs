//! The verified claims of one token: plain owned data a session can keep as its own copy.
//!
//! # Invariants
//!
//! - A `Claims` value only ever comes out of [`Keys::verify`](super::Keys::verify) (or is built
//!   by a caller for its own tests): every field was present, well-typed and checked.
//! - It borrows nothing: no lifetime ties it to the request, the token string or the parse
//!   (the incident's bug was claims living in a request context that ended at the upgrade).
//!
//! # Implementation
//!
//! `Role` and `TokenType` are closed enums with one wire spelling each (`as_str` / `parse`);
//! anything else on the wire is a `missing_claim` rejection, never a default.

use serde::Serialize;

/// Who the bearer is in a consultation; the wire spelling is lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A patient, usually at a hospital kiosk.
    Patient,
    /// A doctor answering consultations.
    Doctor,
    /// An operator: may read any consultation and the metrics.
    Admin,
}

impl Role {
    /// The claim's wire spelling: `patient`, `doctor` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Admin => "admin",
        }
    }

    /// Parses the wire spelling (exact, lowercase); `None` for anything else.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "patient" => Some(Role::Patient),
            "doctor" => Some(Role::Doctor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token may be used for; the wire spelling is lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// Short-lived (900 s by default): HTTP calls, upgrades, `auth` and `renew` frames.
    Access,
    /// Long-lived (7 days by default), good once: accepted only by `/v1/auth/refresh`.
    Refresh,
}

impl TokenType {
    /// The claim's wire spelling: `access` or `refresh`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Access => "access",
            TokenType::Refresh => "refresh",
        }
    }

    /// Parses the wire spelling (exact, lowercase); `None` for anything else.
    pub fn parse(s: &str) -> Option<TokenType> {
        match s {
            "access" => Some(TokenType::Access),
            "refresh" => Some(TokenType::Refresh),
            _ => None,
        }
    }
}

impl std::fmt::Display for TokenType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user id of the bearer (`sub`), never empty.
    pub sub: String,
    /// The bearer's role (`role`).
    pub role: Role,
    /// The login-session id (`sid`), shared by every token of one login; revocation is per sid.
    pub sid: String,
    /// This token's own unique id (`jti`); refresh rotation records it to detect reuse.
    pub jti: String,
    /// When the token was issued, unix seconds (`iat`).
    pub iat: u64,
    /// The first unix second at which the token is no longer valid (`exp`): valid iff now < exp.
    pub exp: u64,
    /// Access or refresh (`typ`).
    pub typ: TokenType,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_wire_spelling_round_trips() {
        for role in [Role::Patient, Role::Doctor, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Doctor"), None);
        assert_eq!(Role::parse("nurse"), None);
    }

    #[test]
    fn token_type_wire_spelling_round_trips() {
        for typ in [TokenType::Access, TokenType::Refresh] {
            assert_eq!(TokenType::parse(typ.as_str()), Some(typ));
        }
        assert_eq!(TokenType::parse("ACCESS"), None);
        assert_eq!(TokenType::parse(""), None);
    }
}
