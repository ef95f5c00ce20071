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
//! The unverified header is decoded once ([`compact`](super::compact): jwt-simple's header rules,
//! a table base64url decoder) to refuse `none` and foreign algorithms and to pick the key.
//! EdDSA: jwt-simple's `verify_token` then checks the signature, and `iss`/`aud`, with
//! `VerificationOptions { accept_future: true, time_tolerance: 0, artificial_time: now }`:
//! its own future checks are off (ours allow 60 s) and its expiry check (`now <= exp` with zero
//! tolerance) is weaker than ours, so ours decides. HS256 (every token of the upgrade path):
//! the same steps in `verify_hs`, with the HMAC keyed once per key ([`HsMac`], tags equal to
//! jwt-simple's `authentication_tag`) and jwt-simple's constant-time tag compare, but without
//! decoding the header twice and the public parts with ct_codecs' constant-time base64
//! (~40% of a verify). Our own claims (`role`, `sid`, `typ`) are read
//! as raw JSON values so that an ill-typed one is `missing_claim`, not a parse failure.

use std::collections::HashSet;

use jwt_simple::prelude::{
    Audiences, Duration, EdDSAPublicKeyLike, JWTClaims, UnixTimeStamp, VerificationOptions,
};
use jwt_simple::reexports::ct_codecs;
use jwt_simple::reexports::serde_json::{self, Value};
use jwt_simple::JWTError;
use serde::Deserialize;

use super::compact::{decode_b64url, Header};
use super::keys::{HsMac, Verifier};
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
        let header_b64 = token.split('.').next().unwrap_or_default();
        let header_json = decode_b64url(header_b64).ok_or(AuthError::Malformed)?;
        let header = Header::parse(&header_json).ok_or(AuthError::Malformed)?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgNone);
        }
        if header.alg != self.alg.name() {
            return Err(AuthError::WrongAlg);
        }
        let key = self
            .verifier_for(header.kid.as_deref())
            .ok_or(AuthError::UnknownKid)?;
        let raw = match key {
            Verifier::Hs(mac) => self.verify_hs(mac, token, &header, now_unix)?,
            Verifier::Ed(k) => k
                .verify_token::<RawCustom>(token, Some(self.options(now_unix)))
                .map_err(|e| classify(&e))?,
        };
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

    /// HS256: jwt-simple's `verify_token` steps after the header, with the public parts decoded
    /// by [`decode_b64url`]: the MAC is [`HsMac::tag`] (jwt-simple's `authentication_tag`
    /// without re-hashing the key's pad blocks) and is compared in constant time
    /// (`ct_codecs::verify`, as jwt-simple does); then the payload is parsed into
    /// jwt-simple's claims type and checked as its `validate` would with [`Self::options`].
    fn verify_hs(
        &self,
        mac: &HsMac,
        token: &str,
        header: &Header<'_>,
        now_unix: u64,
    ) -> Result<JWTClaims<RawCustom>, AuthError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(tag_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        if !header.acceptable() {
            return Err(AuthError::Malformed);
        }
        let tag = decode_b64url(tag_b64).ok_or(AuthError::Malformed)?;
        let signed = token
            .get(..header_b64.len() + 1 + payload_b64.len())
            .ok_or(AuthError::Malformed)?;
        if !ct_codecs::verify(&mac.tag(signed.as_bytes()), &tag) {
            return Err(AuthError::BadSignature);
        }
        let payload = decode_b64url(payload_b64).ok_or(AuthError::Malformed)?;
        let raw: JWTClaims<RawCustom> =
            serde_json::from_slice(&payload).map_err(|e| json_reason(&e))?;
        // jwt-simple's `validate` under `options()`: expiry with zero tolerance, then `iss`,
        // then `aud` (its future checks are off; ours follow in `verify`).
        if raw.expires_at.is_some_and(|exp| now_unix > exp.as_secs()) {
            return Err(AuthError::Expired);
        }
        if let Some(issuer) = &self.issuer {
            if raw.issuer.as_ref() != Some(issuer) {
                return Err(AuthError::WrongIssuer);
            }
        }
        if let Some(audience) = &self.audience {
            let listed = match &raw.audiences {
                None => false,
                Some(Audiences::AsString(aud)) => aud == audience,
                Some(Audiences::AsSet(auds)) => auds.contains(audience),
            };
            if !listed {
                return Err(AuthError::WrongAudience);
            }
        }
        Ok(raw)
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
    // The header already parsed in `verify`, so a JSON *data* error here comes from the
    // signed payload: a standard claim (`sub`, `jti`, `iat`, `exp`...) of the wrong type.
    match e.downcast_ref::<serde_json::Error>() {
        Some(json) => json_reason(json),
        None => AuthError::Malformed,
    }
}

/// A signed payload that is not our claims: a JSON *data* error is a standard claim of the
/// wrong type (`missing_claim`); anything else (syntax, end of input) is `malformed`.
fn json_reason(e: &serde_json::Error) -> AuthError {
    if e.classify() == serde_json::error::Category::Data {
        AuthError::MissingClaim
    } else {
        AuthError::Malformed
    }
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

    // ------------------------------------------------ HS256 path against jwt-simple's own
    use crate::auth::{KeySettings, KeySource};
    use jwt_simple::prelude::{HS256Key, MACLike, Token};
    use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Encoder};
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    const NOW: u64 = 1_700_000_000;
    const SECRET: &[u8] = b"verify-unit-test-secret-0123456789abcdef";

    fn hs_keys(dir: &tempfile::TempDir, issuer: Option<&str>, audience: Option<&str>) -> Keys {
        let path = dir.path().join("secret");
        std::fs::write(&path, SECRET).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let settings = KeySettings {
            source: KeySource::HsSecretFile(path),
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
            extra_verify_keys: Vec::new(),
        };
        Keys::load(&settings, dir.path()).unwrap()
    }

    /// What `verify` answered before its HS256 fast path: jwt-simple's `decode_metadata` and
    /// `verify_token`, then the same claim checks.
    fn reference(keys: &Keys, token: &str) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let meta = Token::decode_metadata(token).map_err(|_| AuthError::Malformed)?;
        if meta.algorithm().eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgNone);
        }
        if meta.algorithm() != keys.alg.name() {
            return Err(AuthError::WrongAlg);
        }
        let Some(Verifier::Hs(_)) = keys.verifier_for(meta.key_id()) else {
            return Err(AuthError::UnknownKid);
        };
        let k = HS256Key::from_bytes(SECRET).with_key_id(keys.kid());
        let raw = k
            .verify_token::<RawCustom>(token, Some(keys.options(NOW)))
            .map_err(|e| classify(&e))?;
        let nbf = raw.invalid_before.map(|t| t.as_secs());
        let claims = claims_from(raw)?;
        check_times(&claims, nbf, NOW)?;
        if claims.typ != TokenType::Access {
            return Err(AuthError::WrongType);
        }
        Ok(claims)
    }

    fn b64(bytes: &[u8]) -> String {
        Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
    }

    fn signed(header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let mac = hmac_sha256::HMAC::mac(input.as_bytes(), SECRET);
        format!("{input}.{}", b64(&mac))
    }

    fn headers(kid: &str) -> Vec<String> {
        let mut all: Vec<String> = [
            json!({"alg": "HS256", "typ": "JWT", "kid": kid}),
            json!({"alg": "HS256"}),
            json!({"alg": "HS256", "kid": "00000000"}),
            json!({"alg": "HS256", "kid": 5}),
            json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
            json!({"alg": "HS256", "typ": "JOSE"}),
            json!({"alg": "HS256", "crit": ["exp"]}),
            json!({"alg": "HS256", "crit": []}),
            json!({"alg": "HS256", "salt": "AA"}),
            json!({"alg": "HS256", "x5u": 1}),
            json!({"alg": "HS256", "other": {"a": 1}}),
            json!({"alg": "none"}),
            json!({"alg": "NONE", "typ": "JWT"}),
            json!({"alg": "HS384"}),
            json!({"typ": "JWT"}),
        ]
        .iter()
        .map(|h| h.to_string())
        .collect();
        all.push(r#"{"alg":"HS256","alg":"HS256"}"#.to_string());
        all.push(r#"{"alg":"HS\u00325\u0036"}"#.to_string());
        all.push("not json".to_string());
        all
    }

    fn payloads() -> Vec<String> {
        let base = json!({"sub": "p1", "role": "patient", "sid": "s1", "jti": "j1",
                          "iat": NOW, "exp": NOW + 900, "typ": "access",
                          "iss": "iss-1", "aud": "aud-1"});
        let with = |key: &str, value: serde_json::Value| {
            let mut p = base.clone();
            p[key] = value;
            p.to_string()
        };
        let without = |key: &str| {
            let mut p = base.clone();
            p.as_object_mut().map(|o| o.remove(key));
            p.to_string()
        };
        vec![
            base.to_string(),
            with("exp", json!(NOW)),
            with("exp", json!(NOW - 1)),
            with("exp", json!((NOW + 900) as f64 + 0.5)),
            with("exp", json!(-5)),
            with("exp", json!("soon")),
            without("exp"),
            with("iat", json!(NOW + 61)),
            with("nbf", json!(NOW + 61)),
            with("nbf", json!(NOW + 59)),
            with("iss", json!("other")),
            without("iss"),
            with("iss", json!(7)),
            with("aud", json!(["x", "aud-1"])),
            with("aud", json!(["x"])),
            with("aud", json!([])),
            without("aud"),
            with("aud", json!(3)),
            with("sub", json!(1)),
            with("sub", json!("")),
            with("role", json!(1)),
            with("role", json!("nurse")),
            with("sid", json!(null)),
            with("typ", json!("refresh")),
            with("extra", json!({"deep": [1, 2]})),
            {
                let mut p = base.clone();
                p["exp"] = json!(NOW - 1);
                p["iss"] = json!("other");
                p.to_string()
            },
            {
                let mut p = base.clone();
                p["exp"] = json!(NOW);
                p["iss"] = json!("other");
                p.to_string()
            },
            r#"{"sub":"a\u0062","role":"doctor","sid":"s","jti":"j","iat":1,"exp":9999999999,"typ":"access","iss":"iss-1","aud":"aud-1"}"#.to_string(),
            r#"{"sub":"a","sub":"b"}"#.to_string(),
            "[1,2]".to_string(),
            "".to_string(),
            "{".to_string(),
        ]
    }

    #[test]
    fn verify_hs256_agrees_with_jwt_simple_on_every_variant() {
        let dir = tempfile::tempdir().unwrap();
        for (issuer, audience) in [(Some("iss-1"), Some("aud-1")), (None, None)] {
            let keys = hs_keys(&dir, issuer, audience);
            let revoked = Revocations::new();
            let mut checked = 0;
            for header in headers(keys.kid()) {
                for payload in payloads() {
                    let token = signed(&header, &payload);
                    let ours = keys.verify(&token, TokenType::Access, NOW, &revoked);
                    assert_eq!(
                        ours,
                        reference(&keys, &token),
                        "header={header} payload={payload}"
                    );
                    checked += usize::from(ours.is_ok());
                }
            }
            assert!(checked > 0, "some variants must verify");
        }
    }

    #[test]
    fn verify_hs256_tampered_or_misshapen_agrees_with_jwt_simple() {
        let dir = tempfile::tempdir().unwrap();
        let keys = hs_keys(&dir, None, None);
        let revoked = Revocations::new();
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": keys.kid()}).to_string();
        let payload = payloads().swap_remove(0);
        let good = signed(&header, &payload);
        let (input, tag) = good.rsplit_once('.').unwrap();
        let last = tag.chars().last().unwrap();
        let bumped = if last == 'A' { 'B' } else { 'A' };
        let variants = [
            good.clone(),
            format!("{input}.{}{bumped}", &tag[..tag.len() - 1]),
            format!("{input}.{tag}="),
            format!("{input}.{tag}A"),
            format!("{input}.{}", &tag[..tag.len() - 1]),
            format!("{input}.{tag}AAAA"),
            format!("{input}."),
            input.to_string(),
            format!("{good}.x"),
            format!("{input}.{}", tag.replace('-', "+").replace('_', "/")),
            String::new(),
            ".".to_string(),
            "..".to_string(),
        ];
        for token in variants {
            let ours = keys.verify(&token, TokenType::Access, NOW, &revoked);
            assert_eq!(ours, reference(&keys, &token), "token={token}");
        }
        assert!(keys.verify(&good, TokenType::Access, NOW, &revoked).is_ok());
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
