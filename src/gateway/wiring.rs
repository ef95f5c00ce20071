//! Settings → the parts' own settings: one place that knows both sides.

use crate::auth::{KeySettings, KeySource};
use crate::config::Settings;
use crate::consult::ConsultTimes;
use crate::ws::SessionSettings;

/// The key options of `serve` and `token`.
pub fn key_settings(s: &Settings) -> KeySettings {
    let source = if let Some(path) = &s.jwt_secret_file {
        KeySource::HsSecretFile(path.clone())
    } else if let Some(path) = &s.jwt_private_key {
        KeySource::EdPrivateKey(path.clone())
    } else if let Some(path) = &s.jwt_public_key {
        KeySource::EdPublicKey(path.clone())
    } else {
        KeySource::Default
    };
    KeySettings {
        source,
        issuer: s.jwt_issuer.clone(),
        audience: s.jwt_audience.clone(),
        extra_verify_keys: s.jwt_extra_verify_keys.clone(),
    }
}

pub fn session_settings(s: &Settings) -> SessionSettings {
    SessionSettings {
        auth_timeout_ms: s.auth_timeout_ms,
        heartbeat_ms: s.heartbeat_ms,
        read_timeout_ms: s.read_timeout_ms,
        idle_timeout_ms: s.idle_timeout_ms,
        session_limit_ms: s.session_limit_ms,
        renew_window_ms: s.renew_window_ms,
        write_stall_ms: s.write_stall_ms,
        outbound_queue_messages: s.outbound_queue_messages,
        outbound_queue_bytes: s.outbound_queue_bytes,
        max_message_bytes: s.max_message_bytes,
        send_rate_per_s: u64::from(s.send_rate_per_s),
        send_burst: u64::from(s.send_burst),
        bad_frames_max: s.bad_frames_max,
        bad_frames_window_ms: s.bad_frames_window_ms,
        dev: s.dev,
    }
}

pub fn consult_times(s: &Settings) -> ConsultTimes {
    ConsultTimes {
        idle_ms: s.consult_idle_ms,
        limit_ms: s.consult_limit_ms,
    }
}
