//! The one error type of the command line: every variant is the operator's fault, exit code 2.
//!
//! # Invariants
//! - Every variant names what was wrong and where (option, environment variable, file:line).
//! - `exit_code()` is the single place that maps these errors to the process exit status.
//! - Messages never contain secret file contents; only option names, paths and the bad text.
//!
//! # Implementation
//! A plain enum with a hand-written `Display`; `main` prints it on stderr and exits.

use std::fmt;
use std::path::PathBuf;

/// Exit status for every command-line usage error (the BSD `EX_USAGE` tradition of `2`, as
/// used by getopt-based tools): the operator must change the invocation or the config.
pub const USAGE_EXIT_CODE: i32 = 2;

/// What was wrong with the command line, environment or config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// No subcommand was given.
    NoCommand,
    /// The first argument is not a known subcommand.
    UnknownCommand(String),
    /// An option the subcommand does not know (or a stray positional argument).
    UnknownOption {
        /// The subcommand being parsed.
        command: &'static str,
        /// The argument as typed.
        option: String,
    },
    /// An option that needs a value was last, or followed by another option.
    MissingValue(String),
    /// A required option (such as `token --sub`) was not given.
    MissingOption {
        /// The subcommand being parsed.
        command: &'static str,
        /// The option's flag.
        option: &'static str,
    },
    /// A value that does not parse; `source` is the flag, environment variable or `file:line`.
    BadValue {
        /// Where the value came from.
        source: String,
        /// What was expected.
        message: String,
    },
    /// The config file could not be read.
    ConfigUnreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error's text.
        message: String,
    },
    /// A line of the config file is malformed, unknown or repeated.
    ConfigLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Values that are fine alone but not together.
    Conflict(String),
}

impl CliError {
    /// The process exit status for this error (always [`USAGE_EXIT_CODE`]).
    pub fn exit_code(&self) -> i32 {
        USAGE_EXIT_CODE
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::NoCommand => {
                write!(f, "no command given (expected serve, token or loadgen)")
            }
            CliError::UnknownCommand(cmd) => {
                write!(
                    f,
                    "unknown command {cmd:?} (expected serve, token or loadgen)"
                )
            }
            CliError::UnknownOption { command, option } => {
                write!(f, "{command}: unknown option {option:?}")
            }
            CliError::MissingValue(option) => write!(f, "{option} needs a value"),
            CliError::MissingOption { command, option } => {
                write!(f, "{command}: {option} is required")
            }
            CliError::BadValue { source, message } => write!(f, "{source}: {message}"),
            CliError::ConfigUnreadable { path, message } => {
                write!(f, "cannot read config file {}: {message}", path.display())
            }
            CliError::ConfigLine {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
            CliError::Conflict(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CliError {}
