//! Every setting of `serve` (and the shared ones of `token`), declared once with its default.
//!
//! # Invariants
//! - Each setting is declared exactly once, in the `settings!` table below: that one line gives
//!   the struct field, its default constant, its flag / environment / file names, its help text
//!   and which subcommands accept it as a flag.
//! - Every limit and timeout default is a named `DEFAULT_*` constant with its reason; nothing
//!   else in the crate repeats the number.
//! - Durations are whole milliseconds in fields suffixed `_ms` (seconds only where the spec
//!   speaks of token lifetimes in seconds: `_s`), so tests can set them short.
//!
//! # Implementation
//! A `macro_rules!` table expands into the `Settings` struct, its `Default`, the option
//! descriptor table [`SETTING_OPTIONS`] that drives parsing and help, and `Settings::set`, which
//! assigns one field by its key.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::value::ConfigValue;

// ---- Server (SPEC §2) -------------------------------------------------------------------------

/// SPEC §2: `serve` listens on loopback port 8080 unless told otherwise.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// SPEC §2: the data dir is `./data` relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Open-socket cap: beyond it new connections are refused so one gateway box (small ARM64,
/// limited fds and RAM) degrades by refusing instead of by thrashing.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// The store's page-cache ceiling (defined with the store, where its reason is).
pub const DEFAULT_STORE_CACHE_BYTES: usize = crate::store::CACHE_BYTES;
/// SPEC §2: SIGTERM must exit within 5 s; 4 s of grace for closes and the store flush leaves 1 s.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 4_000;

// ---- HTTP (SPEC §4) ---------------------------------------------------------------------------

/// SPEC §4: a request head not finished in 10 s is disconnected (slowloris).
pub const DEFAULT_HEAD_TIMEOUT_MS: u64 = 10_000;
/// A request body not finished 10 s after its head (slow-body attack), same budget as the head.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 10_000;
/// SPEC §4: an idle keep-alive connection is closed after 30 s.
pub const DEFAULT_KEEPALIVE_IDLE_MS: u64 = 30_000;
/// SPEC §4: request head at most 16 KiB, else 431 (defined where it is enforced).
pub const DEFAULT_MAX_HEAD_BYTES: usize = crate::http::head::MAX_HEAD_BYTES;
/// SPEC §4: request body at most 64 KiB, else 413 (defined where it is enforced).
pub const DEFAULT_MAX_BODY_BYTES: usize = crate::http::head::MAX_BODY_BYTES as usize;

// ---- Tokens (SPEC §3) -------------------------------------------------------------------------

/// SPEC §3: access tokens live 15 minutes, a hard limit (defined with minting).
pub const DEFAULT_ACCESS_TTL_S: u64 = crate::auth::ACCESS_TTL_S;
/// SPEC §3: refresh tokens live 7 days (defined with minting).
pub const DEFAULT_REFRESH_TTL_S: u64 = crate::auth::REFRESH_TTL_S;

// ---- WebSocket (SPEC §5) ----------------------------------------------------------------------

/// SPEC §5: first-frame `auth` must arrive within 5 s, else close 4000.
pub const DEFAULT_AUTH_TIMEOUT_MS: u64 = 5_000;
/// SPEC §5: the server pings every 15 s.
pub const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
/// SPEC §5: no frame from the client for 45 s (three missed pings) closes 4004.
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 45_000;
/// SPEC §5: 30 min without join/send/leave (the person left the kiosk) closes 4508.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 30 * 60 * 1_000;
/// SPEC §5: a session lives at most 24 h (hard), then closes 4009.
pub const DEFAULT_SESSION_LIMIT_MS: u64 = 24 * 60 * 60 * 1_000;
/// SPEC §5: `token_expiring` is sent 60 s before the access token's `exp`.
pub const DEFAULT_RENEW_WINDOW_MS: u64 = 60_000;
/// SPEC §5: a write not completed within 10 s is a slow consumer: close 4029.
pub const DEFAULT_WRITE_STALL_MS: u64 = 10_000;
/// SPEC §5: an outbound queue of 256 messages at once is a slow consumer: close 4029.
pub const DEFAULT_OUTBOUND_QUEUE_MESSAGES: usize = 256;
/// Smallest outbound queue accepted: one sender's sends in flight (`ws::pipeline::MAX_IN_FLIGHT`)
/// commit in one batch and their relays arrive at a reader at once; a smaller queue would close
/// readers that keep up with 4029.
pub const MIN_OUTBOUND_QUEUE_MESSAGES: usize = 8;
/// SPEC §5: an outbound queue of 1 MiB at once is a slow consumer: close 4029.
pub const DEFAULT_OUTBOUND_QUEUE_BYTES: usize = 1024 * 1024;
/// SPEC §5: a frame or message over 64 KiB closes 1009.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// SPEC §5: at most 50 sends per second per socket ...
pub const DEFAULT_SEND_RATE_PER_S: u32 = 50;
/// SPEC §5: ... with bursts of up to 100.
pub const DEFAULT_SEND_BURST: u32 = 100;
/// SPEC §5: more than 20 bad frames in the window closes 1008 (abuse).
pub const DEFAULT_BAD_FRAMES_MAX: u32 = 20;
/// SPEC §5: the bad-frame window is 10 s.
pub const DEFAULT_BAD_FRAMES_WINDOW_MS: u64 = 10_000;

// ---- Consultations (SPEC §5) ------------------------------------------------------------------

/// SPEC §5: a consultation closes after 30 min without a message (soft).
pub const DEFAULT_CONSULT_IDLE_MS: u64 = 30 * 60 * 1_000;
/// SPEC §5: a consultation closes 60 min after creation (hard).
pub const DEFAULT_CONSULT_LIMIT_MS: u64 = 60 * 60 * 1_000;
/// SPEC is silent: a patient at a kiosk has one or two open at a time; 10 leaves room for
/// retries and forgotten ones, while one token (a kiosk left logged in, a stolen one) cannot
/// hold scopes, rooms and timers without end (each open one lives up to `consult_limit_ms`).
pub const DEFAULT_MAX_OPEN_CONSULTATIONS_PER_PATIENT: usize = 10;

/// Which subcommands accept an option on their command line. Environment and file accept
/// every setting key whatever the subcommand, so one config file serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `serve` only.
    Serve,
    /// `serve` and `token` (data dir, config and key options).
    Shared,
}

/// Where an option may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sources {
    /// Command line, environment and config file.
    All,
    /// Command line and environment (the `config` option itself).
    FlagEnv,
    /// Command line only (the `token` subcommand's own arguments).
    FlagOnly,
}

/// One option, declared once: drives parsing, environment/file lookup and help.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// File key, e.g. `head_timeout_ms`; flag and env names derive from it.
    pub key: &'static str,
    /// The placeholder shown in help (`MS`, `FILE`, ...); empty for bare flags.
    pub value_name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Subcommands accepting it as a flag.
    pub scope: Scope,
    /// Where it may be given.
    pub sources: Sources,
    /// `true` when a bare `--flag` means "on" (booleans).
    pub is_flag: bool,
    /// Renders the default for help.
    pub default: fn() -> String,
}

impl OptionSpec {
    /// The command-line name: `--head-timeout-ms`.
    pub fn flag(&self) -> String {
        format!("--{}", self.key.replace('_', "-"))
    }
    /// The environment variable: `CONSULT_EDGE_HEAD_TIMEOUT_MS`.
    pub fn env_var(&self) -> String {
        format!("CONSULT_EDGE_{}", self.key.to_ascii_uppercase())
    }
}

macro_rules! settings {
    ($( $field:ident : $ty:ty = $default:expr, $value_name:literal, $scope:ident, $help:literal; )*) => {
        /// Every setting of the gateway, after defaults, config file, environment and flags.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Settings {
            $( #[doc = $help] pub $field: $ty, )*
            /// The raw layers these values came from, kept so SIGHUP can re-read the file
            /// and re-apply environment and flags on top. Public but opaque, so code outside
            /// the crate can write `Settings { heartbeat_ms: 50, ..Settings::default() }`.
            pub layers: super::Layers,
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings { $( $field: $default, )* layers: super::Layers::default() }
            }
        }

        /// The descriptor of every setting, in declaration order.
        pub const SETTING_OPTIONS: &[OptionSpec] = &[ $(
            OptionSpec {
                key: stringify!($field),
                value_name: $value_name,
                help: $help,
                scope: Scope::$scope,
                sources: Sources::All,
                is_flag: <$ty as ConfigValue>::IS_FLAG,
                default: || { let value: $ty = $default; value.show_value() },
            },
        )* ];

        impl Settings {
            /// Assigns the setting `key` from its text. `Ok(false)` when no setting has that key.
            pub(crate) fn set(&mut self, key: &str, raw: &str) -> Result<bool, String> {
                match key {
                    $( stringify!($field) => {
                        self.$field = <$ty as ConfigValue>::parse_value(raw)?;
                        Ok(true)
                    } )*
                    _ => Ok(false),
                }
            }

            /// Each value against its parser's rule (`ConfigValue::check_value`), for settings
            /// that were built in code rather than parsed.
            fn check_values(&self) -> Result<(), String> {
                $( <$ty as ConfigValue>::check_value(&self.$field)
                    .map_err(|why| format!("--{}: {why}", stringify!($field).replace('_', "-")))?; )*
                Ok(())
            }
        }
    };
}

settings! {
    listen: SocketAddr = DEFAULT_LISTEN, "ADDR", Serve,
        "Address to listen on (IP:PORT).";
    data_dir: PathBuf = PathBuf::from(DEFAULT_DATA_DIR), "DIR", Shared,
        "Directory of the store and of the generated HS256 secret.";
    jwt_secret_file: Option<PathBuf> = None, "FILE", Shared,
        "HS256 secret file (at least 32 bytes, mode 0600).";
    jwt_private_key: Option<PathBuf> = None, "FILE", Shared,
        "EdDSA private key: the gateway mints and verifies.";
    jwt_public_key: Option<PathBuf> = None, "FILE", Shared,
        "EdDSA public key: verify only (tokens from an identity provider).";
    jwt_extra_verify_keys: Vec<PathBuf> = Vec::new(), "FILE,...", Shared,
        "More keys accepted for verification only (key rotation), comma-separated.";
    jwt_issuer: Option<String> = None, "ISS", Shared,
        "Required `iss` claim (also set on minted tokens).";
    jwt_audience: Option<String> = None, "AUD", Shared,
        "Required `aud` claim (also set on minted tokens).";
    allowed_origins: Vec<String> = Vec::new(), "ORIGIN,...", Serve,
        "Cross-site origins allowed to open WebSockets, comma-separated.";
    dev: bool = false, "", Serve,
        "Development mode: loopback-only fault routes /debug/panic and /debug/sleep for testing.";
    enable_echo: bool = false, "", Serve,
        "Enable the loopback-only WebSocket echo endpoint /debug/echo (conformance testing).";
    max_connections: usize = DEFAULT_MAX_CONNECTIONS, "N", Serve,
        "Open connections beyond which new ones are refused.";
    store_cache_bytes: usize = DEFAULT_STORE_CACHE_BYTES, "BYTES", Serve,
        "Ceiling of the store's page cache (it grows with stored data up to this).";
    shutdown_grace_ms: u64 = DEFAULT_SHUTDOWN_GRACE_MS, "MS", Serve,
        "Time given to closes and the store flush on SIGTERM (ms).";
    head_timeout_ms: u64 = DEFAULT_HEAD_TIMEOUT_MS, "MS", Serve,
        "Deadline to receive a request head (ms).";
    body_timeout_ms: u64 = DEFAULT_BODY_TIMEOUT_MS, "MS", Serve,
        "Deadline to receive a request body after its head (ms).";
    keepalive_idle_ms: u64 = DEFAULT_KEEPALIVE_IDLE_MS, "MS", Serve,
        "Idle keep-alive connections are closed after this (ms).";
    max_head_bytes: usize = DEFAULT_MAX_HEAD_BYTES, "BYTES", Serve,
        "Largest request head (431 beyond).";
    max_body_bytes: usize = DEFAULT_MAX_BODY_BYTES, "BYTES", Serve,
        "Largest request body (413 beyond).";
    access_ttl_s: u64 = DEFAULT_ACCESS_TTL_S, "SECS", Shared,
        "Lifetime of minted access tokens (s).";
    refresh_ttl_s: u64 = DEFAULT_REFRESH_TTL_S, "SECS", Shared,
        "Lifetime of minted refresh tokens (s).";
    auth_timeout_ms: u64 = DEFAULT_AUTH_TIMEOUT_MS, "MS", Serve,
        "Deadline for the first-frame `auth` (ms), else close 4000.";
    heartbeat_ms: u64 = DEFAULT_HEARTBEAT_MS, "MS", Serve,
        "Interval between server pings (ms).";
    read_timeout_ms: u64 = DEFAULT_READ_TIMEOUT_MS, "MS", Serve,
        "No frame from the client for this long closes 4004 (ms).";
    idle_timeout_ms: u64 = DEFAULT_IDLE_TIMEOUT_MS, "MS", Serve,
        "No join/send/leave for this long closes 4508 (ms).";
    session_limit_ms: u64 = DEFAULT_SESSION_LIMIT_MS, "MS", Serve,
        "Hard lifetime of a WebSocket session, then close 4009 (ms).";
    renew_window_ms: u64 = DEFAULT_RENEW_WINDOW_MS, "MS", Serve,
        "`token_expiring` is sent this long before the token's exp (ms).";
    write_stall_ms: u64 = DEFAULT_WRITE_STALL_MS, "MS", Serve,
        "A socket write not done in this long closes 4029 (ms).";
    outbound_queue_messages: usize = DEFAULT_OUTBOUND_QUEUE_MESSAGES, "N", Serve,
        "Outbound queue length at which a socket is closed 4029.";
    outbound_queue_bytes: usize = DEFAULT_OUTBOUND_QUEUE_BYTES, "BYTES", Serve,
        "Outbound queue size at which a socket is closed 4029.";
    max_message_bytes: usize = DEFAULT_MAX_MESSAGE_BYTES, "BYTES", Serve,
        "Largest WebSocket frame or message (1009 beyond).";
    send_rate_per_s: u32 = DEFAULT_SEND_RATE_PER_S, "N", Serve,
        "Sustained `send`s per second per socket.";
    send_burst: u32 = DEFAULT_SEND_BURST, "N", Serve,
        "Burst of `send`s per socket above the rate.";
    bad_frames_max: u32 = DEFAULT_BAD_FRAMES_MAX, "N", Serve,
        "More bad frames than this in the window closes 1008.";
    bad_frames_window_ms: u64 = DEFAULT_BAD_FRAMES_WINDOW_MS, "MS", Serve,
        "Window for counting bad frames (ms).";
    consult_idle_ms: u64 = DEFAULT_CONSULT_IDLE_MS, "MS", Serve,
        "A consultation without a message for this long closes (ms).";
    consult_limit_ms: u64 = DEFAULT_CONSULT_LIMIT_MS, "MS", Serve,
        "A consultation closes this long after creation (ms).";
    max_open_consultations_per_patient: usize = DEFAULT_MAX_OPEN_CONSULTATIONS_PER_PATIENT, "N",
        Serve, "Open consultations a patient may have; one more is refused with 429.";
}

impl Settings {
    /// Every value's own rule (a zero number, an empty text), then the cross-field checks that
    /// no single value can express; the message names the options.
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.check_values()?;
        let keys = [
            self.jwt_secret_file.is_some(),
            self.jwt_private_key.is_some(),
            self.jwt_public_key.is_some(),
        ];
        if keys.iter().filter(|set| **set).count() > 1 {
            return Err(
                "give at most one of --jwt-secret-file, --jwt-private-key, --jwt-public-key"
                    .to_string(),
            );
        }
        if self.outbound_queue_messages < MIN_OUTBOUND_QUEUE_MESSAGES {
            return Err(format!(
                "--outbound-queue-messages ({}) must be at least {MIN_OUTBOUND_QUEUE_MESSAGES}: \
                 one sender's sends in flight are relayed at once",
                self.outbound_queue_messages
            ));
        }
        if self.heartbeat_ms >= self.read_timeout_ms {
            return Err(format!(
                "--heartbeat-ms ({}) must be shorter than --read-timeout-ms ({})",
                self.heartbeat_ms, self.read_timeout_ms
            ));
        }
        Ok(())
    }

    /// The config file these settings were read from, if any.
    pub fn config_file(&self) -> Option<&std::path::Path> {
        self.layers.config_file.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_defaults_match_spec() {
        let s = Settings::default();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert_eq!(s.access_ttl_s, 900);
        assert_eq!(s.refresh_ttl_s, 604_800);
        assert_eq!(s.session_limit_ms, 86_400_000);
        assert_eq!(s.outbound_queue_bytes, 1_048_576);
        assert_eq!(s.max_open_consultations_per_patient, 10);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn settings_option_keys_unique() {
        let mut keys: Vec<&str> = SETTING_OPTIONS.iter().map(|o| o.key).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(before, keys.len());
    }

    #[test]
    fn settings_set_every_key_from_its_default_text() {
        let mut s = Settings::default();
        for option in SETTING_OPTIONS {
            let shown = (option.default)();
            if shown == "(none)" {
                continue;
            }
            assert_eq!(s.set(option.key, &shown), Ok(true), "key={}", option.key);
        }
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn settings_outbound_queue_below_sends_in_flight_rejected() {
        let mut s = Settings {
            outbound_queue_messages: MIN_OUTBOUND_QUEUE_MESSAGES - 1,
            ..Settings::default()
        };
        assert!(s.validate().is_err());
        s.outbound_queue_messages = MIN_OUTBOUND_QUEUE_MESSAGES;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn settings_built_in_code_are_held_to_the_parsers_rules() {
        // One field of each value type: the check is generated for every field alike.
        let cases = [
            (
                Settings {
                    heartbeat_ms: 0,
                    ..Settings::default()
                },
                "--heartbeat-ms: must be greater than zero",
            ),
            (
                Settings {
                    send_burst: 0,
                    ..Settings::default()
                },
                "--send-burst: must be greater than zero",
            ),
            (
                Settings {
                    max_open_consultations_per_patient: 0,
                    ..Settings::default()
                },
                "--max-open-consultations-per-patient: must be greater than zero",
            ),
            (
                Settings {
                    data_dir: PathBuf::new(),
                    ..Settings::default()
                },
                "--data-dir: expected a path, got an empty value",
            ),
            (
                Settings {
                    jwt_issuer: Some(" ".to_string()),
                    ..Settings::default()
                },
                "--jwt-issuer: expected a value, got an empty value",
            ),
        ];
        for (settings, why) in cases {
            assert_eq!(settings.validate(), Err(why.to_string()));
        }
    }

    #[test]
    fn settings_two_key_options_rejected() {
        let s = Settings {
            jwt_secret_file: Some(PathBuf::from("a")),
            jwt_public_key: Some(PathBuf::from("b")),
            ..Settings::default()
        };
        assert!(s.validate().is_err());
    }
}
