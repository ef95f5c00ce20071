//! Black-box tests of the token layer with real key files in a tempdir and real signed tokens.
//! Hand-crafted tokens (alg none, missing or ill-typed claims, foreign keys) are signed here with
//! HMAC-SHA256 directly, so every rejection path is reached with a correctly formed JWS.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use consult_edge::auth::{
    AuthError, Claims, KeyError, KeySettings, KeySource, Keys, MintError, MintRequest, Revocations,
    Role, TokenType, ACCESS_TTL_S, MAX_TOKEN_BYTES, MIN_SECRET_BYTES, REFRESH_TTL_S,
};
use jwt_simple::prelude::{Ed25519KeyPair, Token};
use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use serde_json::{json, Value};
use tempfile::TempDir;

const NOW: u64 = 1_700_000_000;

// ---------------------------------------------------------------- helpers

fn write_mode(path: &Path, bytes: &[u8], mode: u32) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn secret_file(dir: &TempDir, name: &str, byte: u8) -> (PathBuf, Vec<u8>) {
    let path = dir.path().join(name);
    let secret = vec![byte; 48];
    write_mode(&path, &secret, 0o600);
    (path, secret)
}

fn settings(source: KeySource) -> KeySettings {
    KeySettings {
        source,
        ..KeySettings::default()
    }
}

fn load(settings: &KeySettings, dir: &TempDir) -> Keys {
    Keys::load(settings, dir.path()).unwrap()
}

fn hs_keys(dir: &TempDir) -> (Keys, Vec<u8>) {
    let (path, secret) = secret_file(dir, "secret", 7);
    (load(&settings(KeySource::HsSecretFile(path)), dir), secret)
}

/// Writes a fresh Ed25519 key pair as PEM files; returns (private, public) paths.
fn ed_files(dir: &TempDir, name: &str) -> (PathBuf, PathBuf) {
    let pair = Ed25519KeyPair::generate();
    let private = dir.path().join(format!("{name}.pem"));
    let public = dir.path().join(format!("{name}.pub.pem"));
    write_mode(&private, pair.to_pem().as_bytes(), 0o600);
    write_mode(&public, pair.public_key().to_pem().as_bytes(), 0o644);
    (private, public)
}

fn ed_keys(dir: &TempDir, name: &str) -> Keys {
    let (private, _) = ed_files(dir, name);
    load(&settings(KeySource::EdPrivateKey(private)), dir)
}

fn request(typ: TokenType, now: u64) -> MintRequest {
    MintRequest {
        sub: "p1".into(),
        role: Role::Patient,
        sid: Some("sid-1".into()),
        typ,
        ttl_s: ACCESS_TTL_S,
        now_unix: now,
    }
}

fn access(keys: &Keys) -> String {
    keys.mint(request(TokenType::Access, NOW)).unwrap()
}

fn verify(keys: &Keys, token: &str) -> Result<Claims, AuthError> {
    keys.verify(token, TokenType::Access, NOW, &Revocations::new())
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

fn unb64(s: &str) -> Vec<u8> {
    Base64UrlSafeNoPadding::decode_to_vec(s, None).unwrap()
}

/// A complete, valid access payload at `NOW`.
fn payload() -> Value {
    json!({
        "sub": "p1", "role": "patient", "sid": "sid-1", "jti": "j-1",
        "iat": NOW, "exp": NOW + ACCESS_TTL_S, "typ": "access"
    })
}

/// An HS256 JWS of `header` and `payload` signed with `secret`.
fn hs_token(secret: &[u8], header: &Value, payload: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let mac = hmac_sha256::HMAC::mac(signing_input.as_bytes(), secret);
    format!("{signing_input}.{}", b64(&mac))
}

fn hs_header(keys: &Keys) -> Value {
    json!({"alg": "HS256", "typ": "JWT", "kid": keys.kid()})
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

// ---------------------------------------------------------------- accept paths

#[test]
fn hs256_minted_access_token_verifies_with_all_claims() {
    let dir = TempDir::new().unwrap();
    let (keys, _) = hs_keys(&dir);
    let token = access(&keys);
    let claims = verify(&keys, &token).unwrap();
    assert_eq!(claims.sub, "p1");
    assert_eq!(claims.role, Role::Patient);
    assert_eq!(claims.sid, "sid-1");
    assert_eq!(claims.iat, NOW);
    assert_eq!(claims.exp, NOW + ACCESS_TTL_S);
    assert_eq!(claims.typ, TokenType::Access);
    assert_eq!(claims.jti.len(), 32);
    let meta = Token::decode_metadata(&token).unwrap();
    assert_eq!(meta.algorithm(), "HS256");
    assert_eq!(meta.key_id(), Some(keys.kid()));
}

#[test]
fn mint_without_sid_generates_fresh_sid_and_jti() {
    let dir = TempDir::new().unwrap();
    let (keys, _) = hs_keys(&dir);
    let mut req = request(TokenType::Access, NOW);
    req.sid = None;
    let a = verify(&keys, &keys.mint(req.clone()).unwrap()).unwrap();
    let b = verify(&keys, &keys.mint(req).unwrap()).unwrap();
    assert_ne!(a.sid, b.sid);
    assert_ne!(a.jti, b.jti);
}

#[test]
fn eddsa_private_key_mints_and_verifies() {
    let dir = TempDir::new().unwrap();
    let keys = ed_keys(&dir, "ed");
    assert!(keys.can_mint());
    let token = access(&keys);
    let meta = Token::decode_metadata(&token).unwrap();
    assert_eq!(meta.algorithm(), "EdDSA");
    assert_eq!(meta.key_id(), Some(keys.kid()));
    assert_eq!(verify(&keys, &token).unwrap().sub, "p1");
}

#[test]
fn eddsa_public_only_verifies_private_minted_token_and_cannot_mint() {
    let dir = TempDir::new().unwrap();
    let (private, public) = ed_files(&dir, "ed");
    let minter = load(&settings(KeySource::EdPrivateKey(private)), &dir);
    let verifier = load(&settings(KeySource::EdPublicKey(public)), &dir);
    assert_eq!(minter.kid(), verifier.kid());
    assert!(!verifier.can_mint());
    assert_eq!(
        verifier.mint(request(TokenType::Access, NOW)),
        Err(MintError::VerifyOnly)
    );
    assert_eq!(verify(&verifier, &access(&minter)).unwrap().sub, "p1");
}

#[test]
fn rotation_hs256_old_key_token_accepted_only_when_old_key_listed() {
    let dir = TempDir::new().unwrap();
    let (old_path, _) = secret_file(&dir, "old", 1);
    let (new_path, _) = secret_file(&dir, "new", 2);
    let old = load(&settings(KeySource::HsSecretFile(old_path.clone())), &dir);
    let token = access(&old);

    let rotated = KeySettings {
        source: KeySource::HsSecretFile(new_path.clone()),
        extra_verify_keys: vec![old_path],
        ..KeySettings::default()
    };
    let rotated = load(&rotated, &dir);
    assert_ne!(rotated.kid(), old.kid());
    assert_eq!(verify(&rotated, &token).unwrap().sub, "p1");
    // New tokens are signed with the new key.
    let fresh = access(&rotated);
    assert_eq!(
        Token::decode_metadata(&fresh).unwrap().key_id(),
        Some(rotated.kid())
    );

    let new_only = load(&settings(KeySource::HsSecretFile(new_path)), &dir);
    assert_eq!(verify(&new_only, &token), Err(AuthError::UnknownKid));
}

#[test]
fn rotation_eddsa_old_public_key_in_extra_keys_accepts_old_token() {
    let dir = TempDir::new().unwrap();
    let (old_private, old_public) = ed_files(&dir, "old");
    let (new_private, _) = ed_files(&dir, "new");
    let token = access(&load(&settings(KeySource::EdPrivateKey(old_private)), &dir));
    let rotated = KeySettings {
        source: KeySource::EdPrivateKey(new_private),
        extra_verify_keys: vec![old_public],
        ..KeySettings::default()
    };
    assert_eq!(verify(&load(&rotated, &dir), &token).unwrap().sub, "p1");
}

#[test]
fn token_without_kid_is_tried_against_primary_key() {
    let dir = TempDir::new().unwrap();
    let (keys, secret) = hs_keys(&dir);
    let token = hs_token(&secret, &json!({"alg": "HS256"}), &payload());
    assert_eq!(verify(&keys, &token).unwrap().jti, "j-1");
}

#[test]
fn refresh_token_accepted_where_refresh_expected() {
    let dir = TempDir::new().unwrap();
    let (keys, _) = hs_keys(&dir);
    let mut req = request(TokenType::Refresh, NOW);
    req.ttl_s = REFRESH_TTL_S;
    let token = keys.mint(req).unwrap();
    let later = NOW + REFRESH_TTL_S - 1;
    let claims = keys
        .verify(&token, TokenType::Refresh, later, &Revocations::new())
        .unwrap();
    assert_eq!(claims.typ, TokenType::Refresh);
}

#[test]
fn issuer_and_audience_configured_minted_token_verifies() {
    let dir = TempDir::new().unwrap();
    let (path, _) = secret_file(&dir, "secret", 3);
    let keys = load(
        &KeySettings {
            source: KeySource::HsSecretFile(path),
            issuer: Some("hospital-a".into()),
            audience: Some("consult-edge".into()),
            extra_verify_keys: Vec::new(),
        },
        &dir,
    );
    assert_eq!(verify(&keys, &access(&keys)).unwrap().sub, "p1");
}

// ---------------------------------------------------------------- signature and header

#[test]
fn tampered_payload_is_bad_signature() {
    let dir = TempDir::new().unwrap();
    let (keys, _) = hs_keys(&dir);
    let p = parts(&access(&keys));
    let mut body: Value = serde_json::from_slice(&unb64(&p[1])).unwrap();
    body["role"] = json!("admin");
    let forged = format!("{}.{}.{}", p[0], b64(body.to_string().as_bytes()), p[2]);
    assert_eq!(verify(&keys, &forged), Err(AuthError::BadSignature));
}

#[test]
fn tampered_signature_is_bad_signature_hs256_and_eddsa() {
    let dir = TempDir::new().unwrap();
    let (hs, _) = hs_keys(&dir);
    let ed = ed_keys(&dir, "ed");
    for keys in [&hs, &ed] {
        let p = parts(&access(keys));
        let mut sig = unb64(&p[2]);
        sig[0] ^= 1;
        let forged = format!("{}.{}.{}", p[0], p[1], b64(&sig));
        assert_eq!(verify(keys, &forged), Err(AuthError::BadSignature));
    }
}

#[test]
fn wrong_key_with_right_kid_is_bad_signature() {
    let dir = TempDir::new().unwrap();
    let (keys, _) = hs_keys(&dir);
    let token = hs_token(&[9u8; 48], &hs_header(&keys), &payload());
    assert_eq!(verify(&keys, &token), Err(AuthError::BadSignature));
    let no_kid = hs_token(&[9u8; 48], &json!({"alg": "HS256"}), &payload());
    assert_eq!(verify(&keys, &no_kid), Err(AuthError::BadSignature));
}

#[test]
fn eddsa_token_from_other_key_is_unknown_kid() {
    let dir = TempDir::new().unwrap();
    let token = access(&ed_keys(&dir, "a"));
    let keys = ed_keys(&dir, "b");
    assert_eq!(verify(&keys, &token), Err(AuthError::UnknownKid));
}

#[test]
fn unknown_kid_is_refused() {
    let dir = TempDir::new().unwrap();
    let (keys, secret) = hs_keys(&dir);
    let header = json!({"alg": "HS256", "kid": "deadbeef"});
    let token = hs_token(&secret, &header, &payload());
    assert_eq!(verify(&keys, &token), Err(AuthError::UnknownKid));
}

#[test]
fn alg_none_is_refused_on_both_gateways() {
    let dir = TempDir::new().unwrap();
    let (hs, _) = hs_keys(&dir);
    let ed = ed_keys(&dir, "ed");
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT"});
        let token = format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(payload().to_string().as_bytes())
        );
        assert_eq!(verify(&hs, &token), Err(AuthError::AlgNone));
        assert_eq!(verify(&ed, &token), Err(AuthError::AlgNone));
    }
}

#[test]
fn hs256_token_to_eddsa_gateway_is_wrong_alg() {
    let dir = TempDir::new().unwrap();
    let (hs, _) = hs_keys(&dir);
    let (private, public) = ed_files(&dir, "ed");
    let token = access(&hs);
    let ed = load(&settings(KeySource::EdPrivateKey(private)), &dir);
    assert_eq!(verify(&ed, &token), Err(AuthError::WrongAlg));
    // The classic key confusion: HMAC keyed with the gateway's public key PEM.
    let pem = fs::read(&public).unwrap();
    let header = json!({"alg": "HS256", "kid": ed.kid()});
    let confused = hs_token(&pem, &header, &payload());
    assert_eq!(verify(&ed, &confused), Err(AuthError::WrongAlg));
}

#[test]
fn eddsa_token_to_hs256_gateway_is_wrong_alg() {
    let dir = TempDir::new().unwrap();
    let (hs, _) = hs_keys(&dir);
    let token = access(&ed_keys(&dir, "ed"));
    assert_eq!(verify(&hs, &token), Err(AuthError::WrongAlg));
}

#[test]
fn oversize_token_is_too_large() {
    let dir = TempDir::new().unwrap();
    let (keys, secret) = hs_keys(&dir);
    let mut body = payload();
    body["pad"] = json!("x".repeat(MAX_TOKEN_BYTES));
    let token = hs_token(&secret, &hs_header(&keys), &body);
    assert!(token.len() > MAX_TOKEN_BYTES);
    assert_eq!(verify(&keys, &token), Err(AuthError::TooLarge));
    let junk = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(verify(&keys, &junk), Err(AuthError::TooLarge));
}

#[test]
fn token_of_exactly_max_bytes_is_not_too_large() {
    let dir = TempDir::new().unwrap();
    let (keys, secret) = hs_keys(&dir);
    let header = hs_header(&keys);
    let base = hs_token(&secret, &header, &payload()).len();
    // Pad the payload until the token is exactly MAX_TOKEN_BYTES long (base64: 4 chars / 3 bytes).
    let mut pad = (MAX_TOKEN_BYTES - base) * 3 / 4;
    let token = loop {
        let mut body = payload();
        body["pad"] = json!("x".repeat(pad));
        let token = hs_token(&secret, &header, &body);
        if token.len() <= MAX_TOKEN_BYTES {
            break token;
        }
        pad -= 1;
    };
    assert!(token.len() > MAX_TOKEN_BYTES - 4, "len={}", token.len());
    assert!(verify(&keys, &token).is_ok());
}

#[test]
fn garbage_tokens_are_malformed() {
    let dir = TempDir::new().unwrap();
    let (keys, _) = hs_keys(&dir);
    let p = parts(&access(&keys));
    for token in [
        String::new(),
        "abc".to_owned(),
        "a.b.c".to_owned(),
        format!("{}.{}", p[0], p[1]),
        format!("{}.{}.{}.{}", p[0], p[1], p[2], p[2]),
        format!("{}.{}", b64(b"not json"), p[1]),
        format!("{}.{}.%%%", p[0], p[1]),
    ] {
        assert_eq!(verify(&keys, &token), Err(AuthError::Malformed), "{token}");
    }
}

#[test]
fn payload_tampered_into_garbage_is_bad_signature_not_parsed() {
    let dir = TempDir::new().unwrap();
    let (keys, _) = hs_keys(&dir);
    let p = parts(&access(&keys));
    let forged = format!("{}.%%%.{}", p[0], p[2]);
    assert_eq!(verify(&keys, &forged), Err(AuthError::BadSignature));
}

#[test]
fn correctly_signed_non_json_payload_is_malformed() {
    let dir = TempDir::new().unwrap();
    let (keys, secret) = hs_keys(&dir);
    let header = b64(hs_header(&keys).to_string().as_bytes());
    for body in [b64(b"not json"), "%%%".to_owned()] {
        let input = format!("{header}.{body}");
        let mac = hmac_sha256::HMAC::mac(input.as_bytes(), &secret);
        let token = format!("{input}.{}", b64(&mac));
        assert_eq!(verify(&keys, &token), Err(AuthError::Malformed), "{body}");
    }
}

// ---------------------------------------------------------------- time

#[test]
fn expired_when_exp_equals_now_and_when_past() {
    let dir = TempDir::new().unwrap();
    let (keys, _) = hs_keys(&dir);
    let token = access(&keys);
    let none = Revocations::new();
    let exp = NOW + ACCESS_TTL_S;
    assert!(keys
        .verify(&token, TokenType::Access, exp - 1, &none)
        .is_ok());
    assert_eq!(
        keys.verify(&token, TokenType::Access, exp, &none),
        Err(AuthError::Expired)
    );
    assert_eq!(
        keys.verify(&token, TokenType::Access, exp + 3600, &none),
        Err(AuthError::Expired)
    );
}

#[test]
fn iat_61s_ahead_refused_59s_ahead_accepted() {
    let dir = TempDir::new().unwrap();
    let (keys, _) = hs_keys(&dir);
    let ahead_61 = keys.mint(request(TokenType::Access, NOW + 61)).unwrap();
    let ahead_59 = keys.mint(request(TokenType::Access, NOW + 59)).unwrap();
    assert_eq!(verify(&keys, &ahead_61), Err(AuthError::NotYetValid));
    assert!(verify(&keys, &ahead_59).is_ok());
}

#[test]
fn nbf_61s_ahead_refused_59s_ahead_accepted() {
    let dir = TempDir::new().unwrap();
    let (keys, secret) = hs_keys(&dir);
    for (ahead, ok) in [(61, false), (59, true)] {
        let mut body = payload();
        body["nbf"] = json!(NOW + ahead);
        let token = hs_token(&secret, &hs_header(&keys), &body);
        let result = verify(&keys, &token);
        if ok {
            assert!(result.is_ok(), "nbf +{ahead}: {result:?}");
        } else {
            assert_eq!(result, Err(AuthError::NotYetValid), "nbf +{ahead}");
        }
    }
}

// ---------------------------------------------------------------- claims

#[test]
fn wrong_type_both_ways() {
    let dir = TempDir::new().unwrap();
    let (keys, _) = hs_keys(&dir);
    let none = Revocations::new();
    let access_token = access(&keys);
    let refresh_token = keys.mint(request(TokenType::Refresh, NOW)).unwrap();
    assert_eq!(
        keys.verify(&access_token, TokenType::Refresh, NOW, &none),
        Err(AuthError::WrongType)
    );
    assert_eq!(
        keys.verify(&refresh_token, TokenType::Access, NOW, &none),
        Err(AuthError::WrongType)
    );
}

#[test]
fn each_missing_claim_is_refused() {
    let dir = TempDir::new().unwrap();
    let (keys, secret) = hs_keys(&dir);
    for claim in ["sub", "role", "sid", "jti", "iat", "exp", "typ"] {
        let mut body = payload();
        body.as_object_mut().unwrap().remove(claim);
        let token = hs_token(&secret, &hs_header(&keys), &body);
        assert_eq!(
            verify(&keys, &token),
            Err(AuthError::MissingClaim),
            "{claim}"
        );
    }
}

#[test]
fn ill_typed_or_unknown_claim_values_are_refused() {
    let dir = TempDir::new().unwrap();
    let (keys, secret) = hs_keys(&dir);
    let cases = [
        ("sub", json!(42)),
        ("sub", json!("")),
        ("role", json!("nurse")),
        ("role", json!("Doctor")),
        ("role", json!(1)),
        ("sid", json!(7)),
        ("sid", json!("")),
        ("jti", json!(["x"])),
        ("iat", json!("yesterday")),
        ("exp", json!(null)),
        ("typ", json!("id")),
        ("typ", json!(true)),
    ];
    for (claim, value) in cases {
        let mut body = payload();
        body[claim] = value.clone();
        let token = hs_token(&secret, &hs_header(&keys), &body);
        assert_eq!(
            verify(&keys, &token),
            Err(AuthError::MissingClaim),
            "{claim}={value}"
        );
    }
}

#[test]
fn wrong_or_missing_issuer_and_audience_are_refused() {
    let dir = TempDir::new().unwrap();
    let (path, secret) = secret_file(&dir, "secret", 4);
    let keys = load(
        &KeySettings {
            source: KeySource::HsSecretFile(path),
            issuer: Some("hospital-a".into()),
            audience: Some("consult-edge".into()),
            extra_verify_keys: Vec::new(),
        },
        &dir,
    );
    let header = hs_header(&keys);
    let with = |iss: Option<&str>, aud: Option<&str>| {
        let mut body = payload();
        if let Some(iss) = iss {
            body["iss"] = json!(iss);
        }
        if let Some(aud) = aud {
            body["aud"] = json!(aud);
        }
        verify(&keys, &hs_token(&secret, &header, &body))
    };
    let (iss, aud) = (Some("hospital-a"), Some("consult-edge"));
    assert!(with(iss, aud).is_ok());
    assert_eq!(with(Some("hospital-b"), aud), Err(AuthError::WrongIssuer));
    assert_eq!(with(None, aud), Err(AuthError::WrongIssuer));
    assert_eq!(with(iss, Some("other")), Err(AuthError::WrongAudience));
    assert_eq!(with(iss, None), Err(AuthError::WrongAudience));
}

#[test]
fn issuer_not_configured_ignores_token_issuer() {
    let dir = TempDir::new().unwrap();
    let (keys, secret) = hs_keys(&dir);
    let mut body = payload();
    body["iss"] = json!("anyone");
    body["aud"] = json!("anything");
    assert!(verify(&keys, &hs_token(&secret, &hs_header(&keys), &body)).is_ok());
}

#[test]
fn revoked_sid_is_refused_other_sid_accepted() {
    let dir = TempDir::new().unwrap();
    let (keys, _) = hs_keys(&dir);
    let token = access(&keys);
    let revoked = Revocations::new();
    revoked.insert("sid-1", NOW + ACCESS_TTL_S);
    assert_eq!(
        keys.verify(&token, TokenType::Access, NOW, &revoked),
        Err(AuthError::Revoked)
    );
    let mut req = request(TokenType::Access, NOW);
    req.sid = Some("sid-2".into());
    let other_sid = keys.mint(req).unwrap();
    assert!(keys
        .verify(&other_sid, TokenType::Access, NOW, &revoked)
        .is_ok());
}

#[test]
fn mint_refuses_zero_and_huge_ttl_and_empty_sub() {
    let dir = TempDir::new().unwrap();
    let (keys, _) = hs_keys(&dir);
    let mut req = request(TokenType::Access, NOW);
    req.ttl_s = 0;
    let zero = keys.mint(req.clone());
    assert!(matches!(zero, Err(MintError::TtlOutOfRange { .. })));
    req.ttl_s = u64::MAX;
    let huge = keys.mint(req.clone());
    assert!(matches!(huge, Err(MintError::TtlOutOfRange { .. })));
    req.ttl_s = ACCESS_TTL_S;
    req.sub = String::new();
    let empty = keys.mint(req);
    assert!(matches!(empty, Err(MintError::EmptyField { field: "sub" })));
}

// ---------------------------------------------------------------- key loading

#[test]
fn default_secret_created_0600_on_first_start_and_reused_on_second() {
    let dir = TempDir::new().unwrap();
    let data_dir = dir.path().join("data");
    let first = Keys::load(&KeySettings::default(), &data_dir).unwrap();
    let path = data_dir.join("jwt-secret");
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), MIN_SECRET_BYTES as u64);
    let bytes = fs::read(&path).unwrap();
    let token = access(&first);

    let second = Keys::load(&KeySettings::default(), &data_dir).unwrap();
    assert_eq!(fs::read(&path).unwrap(), bytes);
    assert_eq!(second.kid(), first.kid());
    assert_eq!(verify(&second, &token).unwrap().sub, "p1");
    // Only the secret is left behind: no temporary file.
    assert_eq!(fs::read_dir(&data_dir).unwrap().count(), 1);
}

#[test]
fn default_secret_0644_is_refused_not_replaced() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("jwt-secret");
    write_mode(&path, &[5u8; 32], 0o644);
    let err = Keys::load(&KeySettings::default(), dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::TooPermissive { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), vec![5u8; 32]);
}

#[test]
fn secret_file_0644_refused_with_path_mode_and_fix() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("secret");
    write_mode(&path, &[1u8; 32], 0o644);
    let source = KeySource::HsSecretFile(path.clone());
    let err = Keys::load(&settings(source), dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, KeyError::TooPermissive { .. }), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("0644"), "{msg}");
    assert!(msg.contains("chmod 600"), "{msg}");
}

#[test]
fn secret_file_group_writable_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("secret");
    write_mode(&path, &[1u8; 32], 0o620);
    let err = Keys::load(&settings(KeySource::HsSecretFile(path)), dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::TooPermissive { .. }), "{err}");
}

#[test]
fn short_secret_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("secret");
    write_mode(&path, &[1u8; MIN_SECRET_BYTES - 1], 0o600);
    let source = KeySource::HsSecretFile(path.clone());
    let err = Keys::load(&settings(source), dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::TooShort { len: 31, .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn empty_secret_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("secret");
    write_mode(&path, b"", 0o600);
    let err = Keys::load(&settings(KeySource::HsSecretFile(path)), dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::Empty { .. }), "{err}");
}

#[test]
fn missing_key_files_are_refused_naming_the_file() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nope.pem");
    for source in [
        KeySource::HsSecretFile(path.clone()),
        KeySource::EdPrivateKey(path.clone()),
        KeySource::EdPublicKey(path.clone()),
    ] {
        let err = Keys::load(&settings(source), dir.path()).unwrap_err();
        assert!(matches!(err, KeyError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }
    let (secret, _) = secret_file(&dir, "secret", 1);
    let with_missing_extra = KeySettings {
        source: KeySource::HsSecretFile(secret),
        extra_verify_keys: vec![path],
        ..KeySettings::default()
    };
    let err = Keys::load(&with_missing_extra, dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::Missing { .. }), "{err}");
}

#[test]
fn garbage_pem_is_refused_as_malformed() {
    let dir = TempDir::new().unwrap();
    let garbage = dir.path().join("garbage.pem");
    write_mode(
        &garbage,
        b"-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n",
        0o600,
    );
    let binary = dir.path().join("binary.pem");
    write_mode(&binary, &[0xff, 0xfe, 0x00, 0x01], 0o600);
    for path in [&garbage, &binary] {
        for source in [
            KeySource::EdPrivateKey(path.clone()),
            KeySource::EdPublicKey(path.clone()),
        ] {
            let err = Keys::load(&settings(source), dir.path()).unwrap_err();
            assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
        }
    }
}

#[test]
fn public_pem_given_as_private_key_is_malformed_and_vice_versa() {
    let dir = TempDir::new().unwrap();
    let (private, public) = ed_files(&dir, "ed");
    fs::set_permissions(&public, fs::Permissions::from_mode(0o600)).unwrap();
    let err = Keys::load(&settings(KeySource::EdPrivateKey(public)), dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
    let err = Keys::load(&settings(KeySource::EdPublicKey(private)), dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
}

#[test]
fn eddsa_private_key_0644_is_refused() {
    let dir = TempDir::new().unwrap();
    let (private, _) = ed_files(&dir, "ed");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o644)).unwrap();
    let err = Keys::load(&settings(KeySource::EdPrivateKey(private)), dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::TooPermissive { .. }), "{err}");
}

#[test]
fn eddsa_extra_key_that_is_a_secret_file_is_malformed() {
    let dir = TempDir::new().unwrap();
    let (private, _) = ed_files(&dir, "ed");
    let (secret, _) = secret_file(&dir, "secret", 1);
    let mixed = KeySettings {
        source: KeySource::EdPrivateKey(private),
        extra_verify_keys: vec![secret],
        ..KeySettings::default()
    };
    let err = Keys::load(&mixed, dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
}

// ---------------------------------------------------------------- arbitrary input

mod arbitrary {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any string is refused with a reason, never a panic.
        #[test]
        fn verify_arbitrary_string_is_refused_without_panic(token in ".{0,600}") {
            let dir = TempDir::new().unwrap();
            let (keys, _) = hs_keys(&dir);
            prop_assert!(verify(&keys, &token).is_err());
        }

        /// Any single-byte change to a valid token either is refused or (a non-canonical but
        /// equal base64 spelling) yields exactly the original claims.
        #[test]
        fn verify_mutated_token_is_refused_or_identical(pos in 0usize..400, byte in 0x20u8..0x7f) {
            let dir = TempDir::new().unwrap();
            let (keys, _) = hs_keys(&dir);
            let token = access(&keys);
            let original = verify(&keys, &token).unwrap();
            let mut bytes = token.into_bytes();
            let pos = pos % bytes.len();
            prop_assume!(bytes[pos] != byte);
            bytes[pos] = byte;
            let mutated = String::from_utf8(bytes).unwrap();
            if let Ok(claims) = verify(&keys, &mutated) {
                prop_assert_eq!(claims, original);
            }
        }
    }
}
