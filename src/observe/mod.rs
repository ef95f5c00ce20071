//! Observability: logs, W3C trace context, metrics in Prometheus text format.
//!
//! # Invariants
//! - Nothing here knows a transport or a client: the HTTP layer serves [`Metrics::render`],
//!   sessions carry [`TraceParent`]s, every module logs through the `log` macros.
//! - Nothing here logs, renders or echoes a token, a secret or a malformed `traceparent`.
//!
//! # Implementation
//! [`log`] installs `env_logger` with the one-line `key=value` format, [`trace`] parses and
//! mints `traceparent`s, [`metrics`] counts, [`prom`] is a strict parser of the text format
//! used by tests to check that what we render is valid.

pub mod histogram;
pub mod log;
pub mod metrics;
pub mod prom;
pub mod time;
pub mod trace;

pub use self::log::{init_logging, LogValue};
pub use self::metrics::Metrics;
pub use self::prom::{parse_prometheus_text, Labels, Sample};
pub use self::trace::TraceParent;
