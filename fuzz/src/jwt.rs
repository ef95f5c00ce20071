//! Fuzz check for the JWT check path: `auth::Keys::verify(token, Access, now, revocations)`.
//!
//! # Invariants checked
//! 1. Nothing but a minted token is accepted: an arbitrary string or a mutation of a minted
//!    token is accepted only with claims identical to the minted access token's, and in fact
//!    only when it is that token byte for byte (no base64 respelling, padding or trailing bytes:
//!    a token is never malleable, so its text can serve as an identifier).
//! 2. A token signed with the real key over fuzzer-chosen header and payload (the checks after
//!    the signature) is accepted only with `alg` HS256, `typ` access, non-empty `sub`/`sid`/
//!    `jti`, `exp > now`, and `iat` at most `MAX_CLOCK_SKEW_S` ahead.
//! 3. Every accepted token is refused once its sid is revoked (`Revoked`), at `now = exp`
//!    (`Expired`), and where a refresh token is expected (`WrongType`); `verify` is
//!    deterministic.
//!
//! # Implementation
//! An HS256 secret is written mode 0600 to a temp dir once per process and loaded with
//! `Keys::load`; an access and a refresh token are minted at [`NOW`]. The first input byte
//! picks the mode: arbitrary token text, up to [`MAX_MUTATIONS`] byte edits of a minted token,
//! or `header NUL payload` JSON texts signed with the secret.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use consult_edge::auth::{
    AuthError, Claims, KeySettings, KeySource, Keys, MintRequest, Revocations, Role, TokenType,
    MAX_CLOCK_SKEW_S,
};

use crate::input::{text, Cursor};

/// The clock of every check, unix seconds (2023-11-14).
pub const NOW: u64 = 1_700_000_000;

/// The HS256 secret: 48 fixed bytes, so saved inputs of the signed mode replay exactly.
pub const SECRET: [u8; 48] = [0x5a; 48];

/// Most byte edits applied to one minted token.
const MAX_MUTATIONS: u8 = 8;

/// Keys and minted tokens, built once per process.
pub struct Fixture {
    /// The loaded keys (HS256, from a 0600 secret file).
    pub keys: Keys,
    /// A minted access token, valid at [`NOW`].
    pub access: String,
    /// A minted refresh token of the same session.
    pub refresh: String,
    /// The claims `verify` returns for `access`.
    pub access_claims: Claims,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secret");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(&SECRET))
            .expect("write the secret");
        let settings = KeySettings {
            source: KeySource::HsSecretFile(path),
            ..KeySettings::default()
        };
        let keys = Keys::load(&settings, dir.path()).expect("load the secret");
        let mint = |typ| {
            keys.mint(MintRequest {
                sub: "fuzz-user".into(),
                role: Role::Patient,
                sid: Some("fuzz-sid".into()),
                typ,
                ttl_s: 900,
                now_unix: NOW,
            })
            .expect("mint")
        };
        let access = mint(TokenType::Access);
        let refresh = mint(TokenType::Refresh);
        let access_claims = keys
            .verify(&access, TokenType::Access, NOW, &Revocations::new())
            .expect("a minted token verifies");
        Fixture {
            keys,
            access,
            refresh,
            access_claims,
        }
    }
}

thread_local! {
    /// The per-process fixture (libFuzzer runs one input at a time on one thread).
    static FIXTURE: Fixture = Fixture::new();
}

/// Runs every invariant on `data` (panics on a violation).
pub fn check(data: &[u8]) {
    FIXTURE.with(|f| check_with(f, data));
}

/// The invariants of the module doc against `f`.
pub fn check_with(f: &Fixture, data: &[u8]) {
    let mut cursor = Cursor::new(data);
    match cursor.byte() % 3 {
        0 => check_foreign(f, &text(cursor.rest())),
        1 => {
            let base = if cursor.byte().is_multiple_of(2) {
                &f.access
            } else {
                &f.refresh
            };
            let token = mutate(base.as_bytes(), &mut cursor);
            check_foreign(f, &text(&token));
        }
        _ => {
            let rest = cursor.rest();
            let mut parts = rest.splitn(2, |&b| b == 0);
            let header = text(parts.next().unwrap_or_default());
            let payload = text(parts.next().unwrap_or_default());
            check_signed(f, &header, &payload);
        }
    }
}

/// Invariant 1 (and 3) on a token we did not sign ourselves.
pub fn check_foreign(f: &Fixture, token: &str) {
    if let Some(claims) = verify_checked(f, token) {
        assert_eq!(
            claims, f.access_claims,
            "accepted foreign claims for {token:?}"
        );
        assert_eq!(token, f.access, "accepted a respelling of the minted token");
    }
}

/// Invariant 2 (and 3) on `header.payload` signed with the real secret.
pub fn check_signed(f: &Fixture, header: &str, payload: &str) {
    let input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    );
    let mac = hmac_sha256::HMAC::mac(input.as_bytes(), SECRET);
    let token = format!("{input}.{}", b64url(&mac));
    let Some(claims) = verify_checked(f, &token) else {
        return;
    };
    let alg = serde_json::from_str::<serde_json::Value>(header)
        .ok()
        .and_then(|h| h.get("alg").and_then(|a| a.as_str().map(str::to_owned)));
    assert_eq!(alg.as_deref(), Some("HS256"), "accepted header {header:?}");
    assert_eq!(claims.typ, TokenType::Access);
    assert!(!claims.sub.is_empty() && !claims.sid.is_empty() && !claims.jti.is_empty());
    assert!(claims.exp > NOW, "accepted exp={} now={NOW}", claims.exp);
    assert!(
        claims.iat <= NOW + MAX_CLOCK_SKEW_S,
        "accepted iat={}",
        claims.iat
    );
}

/// Verifies `token` at [`NOW`]; on acceptance checks invariant 3 and returns the claims.
fn verify_checked(f: &Fixture, token: &str) -> Option<Claims> {
    let none = Revocations::new();
    let result = f.keys.verify(token, TokenType::Access, NOW, &none);
    assert_eq!(
        f.keys.verify(token, TokenType::Access, NOW, &none),
        result,
        "not deterministic"
    );
    let claims = result.ok()?;
    let revoked = Revocations::new();
    revoked.insert(&claims.sid, claims.exp);
    assert_eq!(
        f.keys.verify(token, TokenType::Access, NOW, &revoked),
        Err(AuthError::Revoked)
    );
    assert_eq!(
        f.keys.verify(token, TokenType::Access, claims.exp, &none),
        Err(AuthError::Expired)
    );
    assert_eq!(
        f.keys.verify(token, TokenType::Refresh, NOW, &none),
        Err(AuthError::WrongType)
    );
    Some(claims)
}

/// `base` after up to [`MAX_MUTATIONS`] edits read from `cursor` (4 bytes each: kind,
/// position as u16 modulo the length, value).
fn mutate(base: &[u8], cursor: &mut Cursor<'_>) -> Vec<u8> {
    const BASE64URL: &[u8; 64] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut token = base.to_vec();
    let count = cursor.byte() % (MAX_MUTATIONS + 1);
    for _ in 0..count {
        let kind = cursor.byte();
        let at = usize::from(cursor.u16()) % (token.len() + 1);
        let value = cursor.byte();
        let letter = BASE64URL
            .get(usize::from(value % 64))
            .copied()
            .unwrap_or(b'A');
        match kind % 6 {
            0 => set(&mut token, at, value),
            1 => token.insert(at, value),
            2 if at < token.len() => {
                token.remove(at);
            }
            3 => token.truncate(at),
            4 => {
                let flipped = token.get(at).map_or(0, |b| b ^ (1 << (value % 8)));
                set(&mut token, at, flipped);
            }
            _ => set(&mut token, at, letter),
        }
    }
    token
}

/// `token[at] = value` when `at` is in range.
fn set(token: &mut [u8], at: usize, value: u8) {
    if let Some(slot) = token.get_mut(at) {
        *slot = value;
    }
}

/// Base64url without padding (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            let index = (n >> (18 - 6 * i)) & 63;
            if let Some(&c) = ALPHABET.get(index as usize) {
                out.push(char::from(c));
            }
        }
    }
    out
}
