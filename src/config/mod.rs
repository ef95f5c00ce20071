//! Settings of the gateway: named defaults, overridden by config file < environment < flags.
//!
//! # Invariants
//! - Every limit and timeout of the spec is a named `DEFAULT_*` constant in [`settings`],
//!   defined once with its reason; the rest of the crate reads them through [`Settings`].
//! - Each option is declared once (a descriptor row) and gets from it its flag
//!   (`--head-timeout-ms`), environment variable (`CONSULT_EDGE_HEAD_TIMEOUT_MS`), config-file
//!   key (`head_timeout_ms`) and help line.
//! - Precedence is command line > environment > config file > default, also after
//!   [`Settings::reload_file`].
//! - Every usage error is a [`CliError`] with exit code 2; `--help` is [`Command::Help`], exit 0.
//! - Durations are milliseconds in options ending `_ms` (seconds for token lifetimes, `_s`).
//!
//! # Implementation
//! Hand-written (no argument-parsing crate): [`value`] parses one value, [`file`] the config
//! file syntax, [`settings`] expands the declaration table, [`cli`] scans argv, layers the
//! sources and renders help, [`error`] says what went wrong.

pub mod cli;
pub mod error;
pub mod file;
pub mod settings;
pub mod value;

pub use cli::{parse_command, Command, Layers, TokenArgs, TokenRole, CONFIG_OPTION, TOKEN_OPTIONS};
pub use error::{CliError, USAGE_EXIT_CODE};
pub use settings::{OptionSpec, Settings, SETTING_OPTIONS};
