//! Close codes (SPEC §5): why a socket ends, mapped to its code in one place.
//!
//! 4000–4499: reconnect (with a fresh token where needed). 4500–4999: final, do not reconnect.

use crate::scope::CancelReason;

pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const UNSUPPORTED_DATA: u16 = 1003;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const POLICY: u16 = 1008;
pub const TOO_BIG: u16 = 1009;
pub const INTERNAL: u16 = 1011;
pub const AUTH_TIMEOUT: u16 = 4000;
pub const TOKEN_EXPIRED: u16 = 4001;
pub const HEARTBEAT_TIMEOUT: u16 = 4004;
pub const SESSION_LIMIT: u16 = 4009;
pub const SLOW_CONSUMER: u16 = 4029;
pub const REVOKED: u16 = 4503;
pub const IDLE: u16 = 4508;

/// The close code and reason text for a session scope's cancellation; `None` when there is
/// nobody to tell (the peer is gone).
pub fn for_reason(reason: &CancelReason) -> Option<(u16, &'static str)> {
    Some(match reason.root() {
        CancelReason::Deadline("auth") => (AUTH_TIMEOUT, "auth timeout"),
        CancelReason::Deadline("token") => (TOKEN_EXPIRED, "token expired"),
        CancelReason::Deadline("heartbeat") => (HEARTBEAT_TIMEOUT, "heartbeat timeout"),
        CancelReason::Deadline("session_limit") => (SESSION_LIMIT, "session limit"),
        CancelReason::Deadline("write_stall") => (SLOW_CONSUMER, "write stalled"),
        CancelReason::Deadline("idle") => (IDLE, "idle"),
        CancelReason::Deadline(_) => (INTERNAL, "deadline"),
        CancelReason::SlowConsumer => (SLOW_CONSUMER, "slow consumer"),
        CancelReason::Revoked => (REVOKED, "token revoked"),
        CancelReason::Shutdown => (GOING_AWAY, "server shutting down"),
        CancelReason::Panicked => (INTERNAL, "internal error"),
        CancelReason::Finished => (NORMAL, "bye"),
        CancelReason::PeerClosed => return None,
        CancelReason::Parent(_) => (INTERNAL, "internal error"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_the_spec_table() {
        let code = |r: CancelReason| for_reason(&r).map(|(c, _)| c);
        assert_eq!(code(CancelReason::Deadline("auth")), Some(4000));
        assert_eq!(code(CancelReason::Deadline("token")), Some(4001));
        assert_eq!(code(CancelReason::Deadline("heartbeat")), Some(4004));
        assert_eq!(code(CancelReason::Deadline("session_limit")), Some(4009));
        assert_eq!(code(CancelReason::Deadline("write_stall")), Some(4029));
        assert_eq!(code(CancelReason::SlowConsumer), Some(4029));
        assert_eq!(code(CancelReason::Deadline("idle")), Some(4508));
        assert_eq!(code(CancelReason::Revoked), Some(4503));
        assert_eq!(
            code(CancelReason::Parent(Box::new(CancelReason::Shutdown))),
            Some(1001)
        );
        assert_eq!(code(CancelReason::Panicked), Some(1011));
        assert_eq!(code(CancelReason::PeerClosed), None);
    }
}
