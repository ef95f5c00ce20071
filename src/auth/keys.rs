//! JWT key material: loading the configured key files, key ids, and which key verifies a token.
//!
//! # Invariants
//!
//! - A gateway has exactly one algorithm (HS256 or EdDSA), fixed by its primary key; every extra
//!   verification key is of that same algorithm (a file of the other kind fails to load).
//! - Every key has a `kid`: the first 8 hex chars of SHA-256 of the HS256 secret or of the raw
//!   32-byte Ed25519 public key. Minted tokens carry the signing key's kid.
//! - Secret and private key files are refused unless their mode grants nothing to group or
//!   others (`mode & 0o077 == 0`); the check is made on the opened file, not on a path lookup.
//! - Key bytes never appear in a log line, an error or a `Debug` output; errors name the file.
//!
//! # Implementation
//!
//! Accepted formats:
//! - HS256 secret file (`--jwt-secret-file`): the file's bytes, verbatim (no trimming), are the
//!   secret; at least [`MIN_SECRET_BYTES`], at most [`MAX_KEY_FILE_BYTES`].
//! - EdDSA private key (`--jwt-private-key`): PEM PKCS#8, `-----BEGIN PRIVATE KEY-----`, as
//!   written by `openssl genpkey -algorithm ed25519`.
//! - EdDSA public key (`--jwt-public-key`, and EdDSA `extra_verify_keys`): PEM SPKI,
//!   `-----BEGIN PUBLIC KEY-----`, as written by `openssl pkey -pubout`. An EdDSA extra key file
//!   holding a private key PEM is also accepted (its public half is used; same mode check).
//! - HS256 `extra_verify_keys`: secret files, same rules as the primary secret.
//!
//! With no key configured ([`KeySource::Default`]) the secret is `<data_dir>/jwt-secret`; on first
//! start it is created with [`MIN_SECRET_BYTES`] random bytes: written to a `create_new` mode-0600
//! temporary file, synced, then hard-linked into place (a link never replaces an existing file),
//! so a crash never leaves a short or empty secret under the real name.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use jwt_simple::prelude::{Ed25519KeyPair, Ed25519PublicKey, HS256Key};
use jwt_simple::reexports::ct_codecs::{Encoder, Hex};
use jwt_simple::reexports::rand::{self, Rng};

/// Shortest accepted HS256 secret: 256 bits, the HMAC-SHA256 block-strength floor (RFC 7518
/// §3.2 requires a key at least as long as the hash output).
pub const MIN_SECRET_BYTES: usize = 32;

/// Largest key file we read: far above any PEM Ed25519 key or sane secret, small enough that a
/// mistaken `--jwt-secret-file /var/log/huge.log` is refused instead of read into memory.
pub const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;

/// Name of the generated secret inside the data dir when no key is configured.
pub const DEFAULT_SECRET_FILE: &str = "jwt-secret";

/// Mode bits that must be clear on a secret or private key file: anything for group or others.
const GROUP_OTHER_BITS: u32 = 0o077;

/// Mode of a generated secret file: owner read/write only.
const SECRET_FILE_MODE: u32 = 0o600;

/// Length of a key id in hex chars (4 bytes of SHA-256).
const KID_HEX_CHARS: usize = 8;

/// Where the gateway's primary key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// HS256 with the secret in this file (`--jwt-secret-file`).
    HsSecretFile(PathBuf),
    /// EdDSA with this PEM private key: the gateway mints and verifies (`--jwt-private-key`).
    EdPrivateKey(PathBuf),
    /// EdDSA with this PEM public key: verify only (`--jwt-public-key`).
    EdPublicKey(PathBuf),
    /// Nothing configured: HS256 with `<data_dir>/jwt-secret`, created on first start.
    Default,
}

/// Key options of `serve` and `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySettings {
    /// The primary key: signs minted tokens and verifies tokens without a `kid`.
    pub source: KeySource,
    /// When set, minted tokens carry this `iss` and verified tokens must carry it.
    pub issuer: Option<String>,
    /// When set, minted tokens carry this `aud` and verified tokens must include it.
    pub audience: Option<String>,
    /// Older keys (same algorithm) still accepted for verification, picked by `kid` (rotation).
    pub extra_verify_keys: Vec<PathBuf>,
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings {
            source: KeySource::Default,
            issuer: None,
            audience: None,
            extra_verify_keys: Vec::new(),
        }
    }
}

/// Why a key could not be loaded: always the operator's configuration; each names the file.
#[derive(Debug)]
pub enum KeyError {
    /// The file does not exist.
    Missing { path: PathBuf },
    /// The file exists but could not be read (permissions of its directory, I/O error...).
    Unreadable { path: PathBuf, source: io::Error },
    /// The file grants access to group or others.
    TooPermissive { path: PathBuf, mode: u32 },
    /// The file is empty.
    Empty { path: PathBuf },
    /// An HS256 secret shorter than [`MIN_SECRET_BYTES`].
    TooShort { path: PathBuf, len: usize },
    /// The file is larger than [`MAX_KEY_FILE_BYTES`].
    TooLarge { path: PathBuf },
    /// The file is not a key of the expected format (bad PEM, wrong key type or size).
    Malformed {
        path: PathBuf,
        expected: &'static str,
    },
    /// The default secret (or the data dir) could not be created.
    Create { path: PathBuf, source: io::Error },
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::Missing { path } => write!(f, "key file {} does not exist", path.display()),
            KeyError::Unreadable { path, source } => {
                write!(f, "key file {} cannot be read: {source}", path.display())
            }
            KeyError::TooPermissive { path, mode } => write!(
                f,
                "key file {} has mode {:04o}, which lets group or others access it; \
                 run `chmod 600 {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
            KeyError::Empty { path } => write!(f, "key file {} is empty", path.display()),
            KeyError::TooShort { path, len } => write!(
                f,
                "HS256 secret file {} holds {len} bytes; at least {MIN_SECRET_BYTES} are needed",
                path.display()
            ),
            KeyError::TooLarge { path } => write!(
                f,
                "key file {} is larger than {MAX_KEY_FILE_BYTES} bytes; is it the right file?",
                path.display()
            ),
            KeyError::Malformed { path, expected } => {
                write!(f, "key file {} is not {expected}", path.display())
            }
            KeyError::Create { path, source } => {
                write!(f, "cannot create {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyError::Unreadable { source, .. } | KeyError::Create { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The configured algorithm; its `name()` is the JWT `alg` header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// Ed25519 signatures.
    EdDsa,
}

impl Algorithm {
    /// The JWT `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::EdDsa => "EdDSA",
        }
    }
}

/// The key that signs minted tokens, if this gateway may mint.
pub(crate) enum Signer {
    Hs(HS256Key),
    Ed(Ed25519KeyPair),
}

/// One key that verifies tokens.
pub(crate) enum Verifier {
    /// HS256: the secret's HMAC keyed once (tags equal to jwt-simple's `authentication_tag`).
    Hs(HsMac),
    Ed(Ed25519PublicKey),
}

/// SHA-256's block (FIPS 180-4 §1): HMAC pads the key to it (RFC 2104 §2, `B`).
const SHA256_BLOCK_BYTES: usize = 64;

/// HMAC-SHA256 (RFC 2104) with the key already absorbed: the SHA-256 states after the key's
/// inner (`ipad`) and outer (`opad`) blocks, cloned for each tag. `hmac_sha256::HMAC::mac`, which
/// jwt-simple calls, hashes both pad blocks again on every verify: 2 of the 9 SHA-256 blocks of
/// a ~350-byte token (~6.6k instructions per upgrade, docs/perf.md).
#[derive(Clone)]
pub(crate) struct HsMac {
    /// SHA-256 after `(K ^ ipad)`.
    inner: hmac_sha256::Hash,
    /// SHA-256 after `(K ^ opad)`.
    outer: hmac_sha256::Hash,
}

impl HsMac {
    pub(crate) fn new(secret: &[u8]) -> HsMac {
        // RFC 2104 §2: a key longer than the block is hashed first; a shorter one is padded
        // with zeros (the XOR below leaves the pad bytes as they are).
        let hashed;
        let key = if secret.len() > SHA256_BLOCK_BYTES {
            hashed = hmac_sha256::Hash::hash(secret);
            &hashed[..]
        } else {
            secret
        };
        let mut ipad = [0x36u8; SHA256_BLOCK_BYTES];
        let mut opad = [0x5cu8; SHA256_BLOCK_BYTES];
        for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(key) {
            *i ^= k;
            *o ^= k;
        }
        let mut inner = hmac_sha256::Hash::new();
        inner.update(ipad);
        let mut outer = hmac_sha256::Hash::new();
        outer.update(opad);
        HsMac { inner, outer }
    }

    /// `HMAC-SHA256(key, input)`.
    pub(crate) fn tag(&self, input: &[u8]) -> [u8; 32] {
        let mut inner = self.inner;
        inner.update(input);
        let mut outer = self.outer;
        outer.update(inner.finalize());
        outer.finalize()
    }
}

/// One verification key with its key id.
pub(crate) struct VerifyKey {
    /// First 8 hex chars of SHA-256 of the key (see module doc).
    pub(crate) kid: String,
    /// The key itself.
    pub(crate) key: Verifier,
}

/// Loaded key material: immutable after [`Keys::load`], shared read-only by every entry point.
pub struct Keys {
    /// The one algorithm this gateway accepts and mints.
    pub(crate) alg: Algorithm,
    /// `Some` when tokens can be minted (HS256 secret or EdDSA private key).
    pub(crate) signer: Option<Signer>,
    /// Verification keys: the primary key first, then `extra_verify_keys` in configured order.
    pub(crate) verifiers: Vec<VerifyKey>,
    /// Required and minted `iss`, when configured.
    pub(crate) issuer: Option<String>,
    /// Required and minted `aud`, when configured.
    pub(crate) audience: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.verifiers.iter().map(|v| v.kid.as_str()).collect();
        f.debug_struct("Keys")
            .field("alg", &self.alg.name())
            .field("can_mint", &self.can_mint())
            .field("kids", &kids)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl Keys {
    /// Loads the configured keys (creating the default secret in `data_dir` on first start).
    pub fn load(settings: &KeySettings, data_dir: &Path) -> Result<Keys, KeyError> {
        let (alg, signer, primary) = match &settings.source {
            KeySource::HsSecretFile(path) => {
                let secret = read_secret(path)?;
                let (signer, verifier) = hs_pair(&secret);
                (Algorithm::Hs256, Some(signer), verifier)
            }
            KeySource::Default => {
                let path = data_dir.join(DEFAULT_SECRET_FILE);
                let secret = load_or_create_default_secret(data_dir, &path)?;
                let (signer, verifier) = hs_pair(&secret);
                (Algorithm::Hs256, Some(signer), verifier)
            }
            KeySource::EdPrivateKey(path) => {
                let pair = read_ed_private(path)?;
                let public = pair.public_key();
                let kid = ed_kid(&public);
                let signer = Signer::Ed(pair.with_key_id(&kid));
                let verifier = VerifyKey {
                    kid,
                    key: Verifier::Ed(public),
                };
                (Algorithm::EdDsa, Some(signer), verifier)
            }
            KeySource::EdPublicKey(path) => {
                let public = read_ed_public(path)?;
                let kid = ed_kid(&public);
                let verifier = VerifyKey {
                    kid,
                    key: Verifier::Ed(public),
                };
                (Algorithm::EdDsa, None, verifier)
            }
        };
        let mut verifiers = vec![primary];
        for path in &settings.extra_verify_keys {
            let extra = match alg {
                Algorithm::Hs256 => hs_pair(&read_secret(path)?).1,
                Algorithm::EdDsa => {
                    let public = read_ed_verify_key(path)?;
                    VerifyKey {
                        kid: ed_kid(&public),
                        key: Verifier::Ed(public),
                    }
                }
            };
            verifiers.push(extra);
        }
        let keys = Keys {
            alg,
            signer,
            verifiers,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        };
        log::info!(
            "jwt keys loaded alg={} kid={} extra_verify_keys={} can_mint={}",
            keys.alg.name(),
            keys.kid(),
            settings.extra_verify_keys.len(),
            keys.can_mint()
        );
        Ok(keys)
    }

    /// Whether [`Keys::mint`](Keys::mint) can sign (false with only an EdDSA public key).
    pub fn can_mint(&self) -> bool {
        self.signer.is_some()
    }

    /// The configured algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The primary key's id: the `kid` of minted tokens.
    pub fn kid(&self) -> &str {
        self.verifiers.first().map_or("", |v| v.kid.as_str())
    }

    /// The key that verifies a token with this `kid` header (`None`: the primary key).
    pub(crate) fn verifier_for(&self, kid: Option<&str>) -> Option<&Verifier> {
        match kid {
            None => self.verifiers.first().map(|v| &v.key),
            Some(kid) => self.verifiers.iter().find(|v| v.kid == kid).map(|v| &v.key),
        }
    }
}

/// Key id: the first [`KID_HEX_CHARS`] hex chars of SHA-256 of `bytes`.
fn kid_of(bytes: &[u8]) -> String {
    let digest = hmac_sha256::Hash::hash(bytes);
    let prefix = digest.get(..KID_HEX_CHARS / 2).unwrap_or(&digest);
    // Hex encoding of 4 bytes into a String cannot fail; fall back to "" rather than panic.
    Hex::encode_to_string(prefix).unwrap_or_default()
}

fn ed_kid(public: &Ed25519PublicKey) -> String {
    kid_of(&public.to_bytes())
}

fn hs_pair(secret: &[u8]) -> (Signer, VerifyKey) {
    let kid = kid_of(secret);
    let key = HS256Key::from_bytes(secret).with_key_id(&kid);
    (
        Signer::Hs(key),
        VerifyKey {
            kid,
            key: Verifier::Hs(HsMac::new(secret)),
        },
    )
}

/// Opens `path` for reading, mapping "not found" to [`KeyError::Missing`].
fn open(path: &Path) -> Result<File, KeyError> {
    File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => KeyError::Missing {
            path: path.to_owned(),
        },
        _ => KeyError::Unreadable {
            path: path.to_owned(),
            source,
        },
    })
}

/// Reads a whole key file (bounded by [`MAX_KEY_FILE_BYTES`]), refusing an empty one, and when
/// `secret` is set, one whose mode grants anything to group or others.
fn read_key_file(path: &Path, secret: bool) -> Result<Vec<u8>, KeyError> {
    let file = open(path)?;
    let unreadable = |source| KeyError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let meta = file.metadata().map_err(unreadable)?;
    let mode = meta.permissions().mode();
    if secret && mode & GROUP_OTHER_BITS != 0 {
        return Err(KeyError::TooPermissive {
            path: path.to_owned(),
            mode,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyError::TooLarge {
            path: path.to_owned(),
        });
    }
    if bytes.is_empty() {
        return Err(KeyError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

fn read_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
    let bytes = read_key_file(path, true)?;
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(KeyError::TooShort {
            path: path.to_owned(),
            len: bytes.len(),
        });
    }
    Ok(bytes)
}

/// Reads a PEM file as text; non-UTF-8 content is [`KeyError::Malformed`].
fn read_pem(path: &Path, secret: bool, expected: &'static str) -> Result<String, KeyError> {
    let bytes = read_key_file(path, secret)?;
    String::from_utf8(bytes).map_err(|_| KeyError::Malformed {
        path: path.to_owned(),
        expected,
    })
}

const ED_PRIVATE_PEM: &str = "an Ed25519 private key in PEM (PKCS#8, BEGIN PRIVATE KEY)";
const ED_PUBLIC_PEM: &str = "an Ed25519 public key in PEM (SPKI, BEGIN PUBLIC KEY)";

fn read_ed_private(path: &Path) -> Result<Ed25519KeyPair, KeyError> {
    let pem = read_pem(path, true, ED_PRIVATE_PEM)?;
    Ed25519KeyPair::from_pem(&pem).map_err(|_| KeyError::Malformed {
        path: path.to_owned(),
        expected: ED_PRIVATE_PEM,
    })
}

fn read_ed_public(path: &Path) -> Result<Ed25519PublicKey, KeyError> {
    let pem = read_pem(path, false, ED_PUBLIC_PEM)?;
    // ed25519-compact would derive a public key from a private PEM too; refuse it: a private key
    // configured as "public" would escape the mode check and the operator's intent is unclear.
    if pem.contains("PRIVATE KEY") {
        return Err(KeyError::Malformed {
            path: path.to_owned(),
            expected: ED_PUBLIC_PEM,
        });
    }
    Ed25519PublicKey::from_pem(&pem).map_err(|_| KeyError::Malformed {
        path: path.to_owned(),
        expected: ED_PUBLIC_PEM,
    })
}

/// An EdDSA extra verification key: a public key PEM, or a private key PEM (mode-checked).
fn read_ed_verify_key(path: &Path) -> Result<Ed25519PublicKey, KeyError> {
    let pem = read_pem(path, false, ED_PUBLIC_PEM)?;
    if pem.contains("PRIVATE KEY") {
        return read_ed_private(path).map(|pair| pair.public_key());
    }
    Ed25519PublicKey::from_pem(&pem).map_err(|_| KeyError::Malformed {
        path: path.to_owned(),
        expected: ED_PUBLIC_PEM,
    })
}

/// `<data_dir>/jwt-secret`: read it if it exists, else create it (see module doc).
fn load_or_create_default_secret(data_dir: &Path, path: &Path) -> Result<Vec<u8>, KeyError> {
    match read_secret(path) {
        Err(KeyError::Missing { .. }) => {}
        other => return other,
    }
    let create = |source| KeyError::Create {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(create)?;
    let mut secret = vec![0u8; MIN_SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    let tmp = data_dir.join(format!("{DEFAULT_SECRET_FILE}.tmp-{}", std::process::id()));
    let written = write_new_secret(&tmp, &secret).and_then(|()| std::fs::hard_link(&tmp, path));
    // The temporary name is never needed again, whether or not the link worked.
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            if let Ok(dir) = File::open(data_dir) {
                // Best effort: make the new directory entry durable.
                let _ = dir.sync_all();
            }
            log::info!(
                "jwt secret created path={} bytes={MIN_SECRET_BYTES} mode=0600",
                path.display()
            );
            Ok(secret)
        }
        // Another process created it between our read and our link: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_secret(path),
        Err(e) => Err(create(e)),
    }
}

fn write_new_secret(tmp: &Path, secret: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(SECRET_FILE_MODE)
        .open(tmp)?;
    file.write_all(secret)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_eight_lowercase_hex_of_sha256() {
        // SHA-256("abc") = ba7816bf...
        assert_eq!(kid_of(b"abc"), "ba7816bf");
        assert_eq!(kid_of(b"abc").len(), KID_HEX_CHARS);
    }

    #[test]
    fn key_error_permissive_names_path_mode_and_fix() {
        let e = KeyError::TooPermissive {
            path: PathBuf::from("/etc/x/secret"),
            mode: 0o100644,
        };
        let msg = e.to_string();
        assert!(msg.contains("/etc/x/secret"), "{msg}");
        assert!(msg.contains("0644"), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
    }

    /// jwt-simple's tag for `input` under `secret` (what `verify_token` compares).
    fn jwt_simple_tag(secret: &[u8], input: &[u8]) -> Vec<u8> {
        use jwt_simple::prelude::MACLike;
        HS256Key::from_bytes(secret).authentication_tag(input)
    }

    #[test]
    fn hs_mac_key_lengths_around_the_block_match_jwt_simple() {
        let input = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwMSJ9";
        for len in [0, 1, 31, 32, 63, 64, 65, 128, 129, 300] {
            let secret: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let ours = HsMac::new(&secret).tag(input);
            assert_eq!(
                ours.to_vec(),
                jwt_simple_tag(&secret, input),
                "key of {len} bytes"
            );
        }
    }

    #[test]
    fn hs_mac_rfc4231_case_2_tag() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        let tag = HsMac::new(b"Jefe").tag(b"what do ya want for nothing?");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    proptest::proptest! {
        #[test]
        fn hs_mac_tag_equals_jwt_simple_authentication_tag(
            secret in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1200),
        ) {
            let mac = HsMac::new(&secret);
            proptest::prop_assert_eq!(mac.tag(&input).to_vec(), jwt_simple_tag(&secret, &input));
            // Keyed once, used many times: a tag leaves the keyed state as it was.
            proptest::prop_assert_eq!(mac.tag(&input).to_vec(), jwt_simple_tag(&secret, &input));
        }
    }
}
