//! Tokens for the load generator's users, minted with the same key options as `token`.
//!
//! # Invariants
//!
//! - User `2k` is patient `p<k>`, user `2k+1` is doctor `d<k>`; each token has its own `sid`,
//!   so revoking one socket's session never touches another's.
//! - Every token outlives the whole run: its lifetime is the send phase plus
//!   [`TOKEN_TTL_MARGIN_S`] for connecting, idling and draining.
//! - The default key (`DATA_DIR/jwt-secret`) is read, never created: a load generator that
//!   invented a secret would mint tokens no gateway accepts.
//!
//! # Implementation
//!
//! Loads [`Keys`] once and calls [`Keys::mint`] per user; minting is CPU only (HS256 is a few
//! µs, Ed25519 ~20 µs), so even 50,000 tokens take well under a second.

use std::path::Path;

use crate::auth::{
    KeySettings, KeySource, Keys, MintRequest, Role, TokenType, DEFAULT_SECRET_FILE,
};

/// Extra token lifetime beyond the send phase: covers the connect phase of the largest run
/// (50,000 sockets at a slow server's ~100 upgrades/s is ~8 min), the 5 s RSS idle and the
/// drain, with room to spare; an access token expiring mid-run would close sockets with 4001.
pub const TOKEN_TTL_MARGIN_S: u64 = 1800;

/// One simulated user: who it is and its bearer token.
#[derive(Debug, Clone)]
pub struct User {
    /// `p<k>` or `d<k>`: the token's `sub`.
    pub sub: String,
    /// The access token for the upgrade's `Authorization: Bearer` header.
    pub token: String,
}

/// Why tokens could not be minted (the operator's key configuration).
#[derive(Debug)]
pub struct MintFailure(pub String);

impl std::fmt::Display for MintFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `sub` of socket `index`: even sockets are patients, odd sockets doctors of pair `index/2`.
pub fn sub_of(index: usize) -> String {
    let pair = index / 2;
    if index.is_multiple_of(2) {
        format!("p{pair}")
    } else {
        format!("d{pair}")
    }
}

/// Loads the keys and mints `count` access tokens living `duration_s + TOKEN_TTL_MARGIN_S`.
pub fn mint_users(
    settings: &KeySettings,
    data_dir: &Path,
    count: usize,
    duration_s: u64,
    now_unix: u64,
) -> Result<Vec<User>, MintFailure> {
    if settings.source == KeySource::Default {
        let path = data_dir.join(DEFAULT_SECRET_FILE);
        if !path.exists() {
            return Err(MintFailure(format!(
                "no key: {} does not exist (start the gateway with --data-dir {} first, or \
                 pass --jwt-secret-file / --jwt-private-key)",
                path.display(),
                data_dir.display()
            )));
        }
    }
    let keys = Keys::load(settings, data_dir).map_err(|e| MintFailure(e.to_string()))?;
    let ttl_s = duration_s.saturating_add(TOKEN_TTL_MARGIN_S);
    (0..count)
        .map(|index| {
            let sub = sub_of(index);
            let role = if index.is_multiple_of(2) {
                Role::Patient
            } else {
                Role::Doctor
            };
            let token = keys
                .mint(MintRequest {
                    sub: sub.clone(),
                    role,
                    sid: None,
                    typ: TokenType::Access,
                    ttl_s,
                    now_unix,
                })
                .map_err(|e| MintFailure(e.to_string()))?;
            Ok(User { sub, token })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Revocations;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn mint_pairs_patient_then_doctor_with_own_sids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(&[b'k'; 32]).unwrap();
        let settings = KeySettings {
            source: KeySource::HsSecretFile(path),
            ..KeySettings::default()
        };
        let users = mint_users(&settings, dir.path(), 4, 10, 1_700_000_000).unwrap();
        let subs: Vec<&str> = users.iter().map(|u| u.sub.as_str()).collect();
        assert_eq!(subs, ["p0", "d0", "p1", "d1"]);
        let keys = Keys::load(&settings, dir.path()).unwrap();
        let claims: Vec<_> = users
            .iter()
            .map(|u| {
                keys.verify(
                    &u.token,
                    TokenType::Access,
                    1_700_000_005,
                    &Revocations::new(),
                )
                .unwrap()
            })
            .collect();
        assert_eq!(claims[0].role, Role::Patient);
        assert_eq!(claims[1].role, Role::Doctor);
        assert_ne!(claims[0].sid, claims[1].sid);
        assert_eq!(claims[0].exp, 1_700_000_000 + 10 + TOKEN_TTL_MARGIN_S);
    }

    #[test]
    fn mint_default_key_missing_refused_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let err = mint_users(&KeySettings::default(), dir.path(), 2, 1, 1_700_000_000);
        assert!(err.is_err());
        assert!(!dir.path().join(DEFAULT_SECRET_FILE).exists());
    }
}
