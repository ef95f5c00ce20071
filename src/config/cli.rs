//! Command-line parsing, layering (flags > environment > file > default) and help text.
//!
//! # Invariants
//! - Options are looked up only in the descriptor tables (`SETTING_OPTIONS`, [`CONFIG_OPTION`],
//!   [`TOKEN_OPTIONS`]): adding an option there adds it to parsing, environment, file and help.
//! - The environment is read once, at parse time, through the injected lookup; `reload_file`
//!   re-reads only the file and re-applies the captured environment and flags on top.
//! - Empty environment variables count as unset (shells make `VAR=` easy to leave behind).
//!
//! # Implementation
//! `scan` turns argv into `(option, value)` pairs (`--opt value`, `--opt=value`, bare boolean
//! flags), `Layers` keeps the raw text of each layer, and `build` applies them in order onto
//! `Settings::default()`, validating each value as it goes and the whole at the end.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::error::CliError;
use super::file::{parse_config_text, MAX_CONFIG_FILE_BYTES};
use super::settings::{OptionSpec, Scope, Settings, Sources, SETTING_OPTIONS};
use super::value::ConfigValue;

/// `--config FILE` / `CONSULT_EDGE_CONFIG`: the optional config file (not itself a file key).
pub const CONFIG_OPTION: OptionSpec = OptionSpec {
    key: "config",
    value_name: "FILE",
    help: "Config file of `key = value` lines (keys as listed here, e.g. head_timeout_ms).",
    scope: Scope::Shared,
    sources: Sources::FlagEnv,
    is_flag: false,
    default: || "(none)".to_string(),
};

/// The `token` subcommand's own arguments (command line only).
pub const TOKEN_OPTIONS: &[OptionSpec] = &[
    token_option(
        "sub",
        "ID",
        "Subject (user id) of the token. Required.",
        false,
    ),
    token_option("role", "ROLE", "patient, doctor or admin. Required.", false),
    token_option(
        "ttl",
        "SECS",
        "Lifetime in seconds (default: access_ttl_s, or refresh_ttl_s with --refresh).",
        false,
    ),
    token_option(
        "sid",
        "SID",
        "Login-session id (default: a new one).",
        false,
    ),
    token_option(
        "refresh",
        "",
        "Mint a refresh token instead of an access token.",
        true,
    ),
];

const fn token_option(
    key: &'static str,
    value_name: &'static str,
    help: &'static str,
    is_flag: bool,
) -> OptionSpec {
    OptionSpec {
        key,
        value_name,
        help,
        scope: Scope::Shared,
        sources: Sources::FlagOnly,
        is_flag,
        default: || "(none)".to_string(),
    }
}

/// The role a minted token carries (SPEC §3 `role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    /// A patient at a kiosk.
    Patient,
    /// A doctor.
    Doctor,
    /// An operator.
    Admin,
}

impl TokenRole {
    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Patient => "patient",
            TokenRole::Doctor => "doctor",
            TokenRole::Admin => "admin",
        }
    }
}

impl ConfigValue for TokenRole {
    fn parse_value(raw: &str) -> Result<Self, String> {
        match raw {
            "patient" => Ok(TokenRole::Patient),
            "doctor" => Ok(TokenRole::Doctor),
            "admin" => Ok(TokenRole::Admin),
            _ => Err(format!("expected patient, doctor or admin, got {raw:?}")),
        }
    }
    fn show_value(&self) -> String {
        self.as_str().to_string()
    }
}

/// What `consult-edge token` was asked to mint.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenArgs {
    /// Data dir and key options (the same key `serve` uses).
    pub settings: Settings,
    /// The `sub` claim.
    pub sub: String,
    /// The `role` claim.
    pub role: TokenRole,
    /// Lifetime in seconds, already defaulted from the settings' access or refresh TTL.
    pub ttl_s: u64,
    /// The `sid` claim; `None` means "mint a new login session".
    pub sid: Option<String>,
    /// `true` for a refresh token, `false` for an access token.
    pub refresh: bool,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run the gateway.
    Serve(Settings),
    /// Print one token.
    Token(TokenArgs),
    /// Run the load generator with these raw arguments (its flags are its own).
    Loadgen(Vec<String>),
    /// Print this usage text on stdout and exit 0.
    Help(String),
}

/// The raw text of each configuration layer, kept so the file can be re-read on SIGHUP.
/// Opaque: only the parser fills it; `Layers::default()` means "defaults only, no file".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layers {
    /// The config file named by `--config` or `CONSULT_EDGE_CONFIG`.
    pub(crate) config_file: Option<PathBuf>,
    /// `(key, value)` from the environment, in table order.
    env: Vec<(&'static str, String)>,
    /// `(key, flag as typed, value)` from the command line, in argument order.
    flags: Vec<(&'static str, String, String)>,
}

/// Parses the arguments after the program name. `env` looks up environment variables.
pub fn parse_command(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, CliError> {
    let Some((first, rest)) = args.split_first() else {
        return Err(CliError::NoCommand);
    };
    match first.as_str() {
        "serve" => {
            let options = command_options(Scope::Serve);
            match scan("serve", rest, &options)? {
                None => Ok(Command::Help(serve_help())),
                Some(pairs) => Ok(Command::Serve(build(layers(pairs, env))?)),
            }
        }
        "token" => parse_token(rest, env),
        "loadgen" => Ok(Command::Loadgen(rest.to_vec())),
        "--help" | "-h" | "help" => Ok(Command::Help(top_help())),
        other => Err(CliError::UnknownCommand(other.to_string())),
    }
}

impl Settings {
    /// Re-reads the config file and re-applies the environment and flags captured at start
    /// (for SIGHUP). The result has the same precedence as the original parse. Values set by
    /// code rather than by `parse_command` are not layers: they reload to their defaults.
    pub fn reload_file(&self) -> Result<Settings, CliError> {
        build(self.layers.clone())
    }
}

fn parse_token(rest: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Command, CliError> {
    let mut options = command_options(Scope::Shared);
    options.extend(TOKEN_OPTIONS);
    let Some(pairs) = scan("token", rest, &options)? else {
        return Ok(Command::Help(token_help()));
    };
    let (own, shared): (Vec<_>, Vec<_>) = pairs
        .into_iter()
        .partition(|(spec, _, _)| spec.sources == Sources::FlagOnly);
    let settings = build(layers(shared, env))?;
    let (mut sub, mut role, mut ttl, mut sid, mut refresh) = (None, None, None, None, false);
    for (spec, flag, raw) in own {
        let bad = |message: String| CliError::BadValue {
            source: flag.clone(),
            message,
        };
        match spec.key {
            "sub" => sub = Some(non_empty(&raw).map_err(bad)?),
            "role" => role = Some(TokenRole::parse_value(&raw).map_err(bad)?),
            "ttl" => ttl = Some(u64::parse_value(&raw).map_err(bad)?),
            "sid" => sid = Some(non_empty(&raw).map_err(bad)?),
            _ => refresh = bool::parse_value(&raw).map_err(bad)?,
        }
    }
    let missing = |option| CliError::MissingOption {
        command: "token",
        option,
    };
    let ttl_s = ttl.unwrap_or(if refresh {
        settings.refresh_ttl_s
    } else {
        settings.access_ttl_s
    });
    Ok(Command::Token(TokenArgs {
        sub: sub.ok_or_else(|| missing("--sub"))?,
        role: role.ok_or_else(|| missing("--role"))?,
        ttl_s,
        sid,
        refresh,
        settings,
    }))
}

fn non_empty(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        Err("must not be empty".to_string())
    } else {
        Ok(raw.to_string())
    }
}

/// The setting options a subcommand accepts as flags, plus `--config`.
fn command_options(scope: Scope) -> Vec<&'static OptionSpec> {
    let mut options: Vec<&'static OptionSpec> = SETTING_OPTIONS
        .iter()
        .filter(|o| scope == Scope::Serve || o.scope == Scope::Shared)
        .collect();
    options.push(&CONFIG_OPTION);
    options
}

type Pairs = Vec<(&'static OptionSpec, String, String)>;

/// Splits argv into `(option, flag as typed, value)`; `Ok(None)` when help was asked for.
fn scan(
    command: &'static str,
    args: &[String],
    options: &[&'static OptionSpec],
) -> Result<Option<Pairs>, CliError> {
    let mut pairs = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        let unknown = || CliError::UnknownOption {
            command,
            option: arg.clone(),
        };
        let Some(body) = arg.strip_prefix("--") else {
            return Err(unknown());
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (body, None),
        };
        let spec = options
            .iter()
            .find(|o| o.key.replace('_', "-") == name)
            .ok_or_else(unknown)?;
        let flag = format!("--{name}");
        let value = match inline {
            Some(value) => value,
            None if spec.is_flag => "true".to_string(),
            None => match iter.next() {
                Some(next) if !next.starts_with("--") => next.clone(),
                _ => return Err(CliError::MissingValue(flag)),
            },
        };
        pairs.push((*spec, flag, value));
    }
    Ok(Some(pairs))
}

/// Captures the environment and sorts flags into layers.
fn layers(pairs: Pairs, env: &dyn Fn(&str) -> Option<String>) -> Layers {
    let lookup = |spec: &OptionSpec| env(&spec.env_var()).filter(|v| !v.is_empty());
    let mut layers = Layers {
        config_file: lookup(&CONFIG_OPTION).map(PathBuf::from),
        env: SETTING_OPTIONS
            .iter()
            .filter_map(|spec| lookup(spec).map(|value| (spec.key, value)))
            .collect(),
        flags: Vec::new(),
    };
    for (spec, flag, value) in pairs {
        if spec.key == CONFIG_OPTION.key {
            layers.config_file = Some(PathBuf::from(value));
        } else {
            layers.flags.push((spec.key, flag, value));
        }
    }
    layers
}

/// Applies default < file < environment < flags, then checks the whole.
fn build(layers: Layers) -> Result<Settings, CliError> {
    let mut settings = Settings::default();
    if let Some(path) = &layers.config_file {
        apply_file(&mut settings, path)?;
    }
    for (key, value) in &layers.env {
        let source = || format!("CONSULT_EDGE_{}", key.to_ascii_uppercase());
        apply(&mut settings, key, value, source)?;
    }
    for (key, flag, value) in &layers.flags {
        apply(&mut settings, key, value, || flag.clone())?;
    }
    settings.validate().map_err(CliError::Conflict)?;
    settings.layers = layers;
    Ok(settings)
}

fn apply(
    settings: &mut Settings,
    key: &str,
    value: &str,
    source: impl Fn() -> String,
) -> Result<(), CliError> {
    match settings.set(key, value) {
        Ok(true) => Ok(()),
        Ok(false) => Err(CliError::BadValue {
            source: source(),
            message: format!("no setting named {key:?}"),
        }),
        Err(message) => Err(CliError::BadValue {
            source: source(),
            message,
        }),
    }
}

fn apply_file(settings: &mut Settings, path: &std::path::Path) -> Result<(), CliError> {
    let unreadable = |message: String| CliError::ConfigUnreadable {
        path: path.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
    // A device, FIFO or /proc file reports length 0 and may never end (`/dev/zero`): only
    // regular files, and never more than the limit however the read goes.
    if !meta.is_file() {
        return Err(unreadable("not a regular file".to_owned()));
    }
    let mut text = String::new();
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_CONFIG_FILE_BYTES + 1),
        &mut text,
    )
    .map_err(|e| unreadable(e.to_string()))?;
    if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(unreadable(format!(
            "larger than {MAX_CONFIG_FILE_BYTES} bytes"
        )));
    }
    let bad_line = |line: usize, message: String| CliError::ConfigLine {
        path: path.to_path_buf(),
        line,
        message,
    };
    let entries = parse_config_text(&text).map_err(|(line, message)| bad_line(line, message))?;
    for entry in entries {
        match settings.set(&entry.key, &entry.value) {
            Ok(true) => {}
            Ok(false) => return Err(bad_line(entry.line, format!("unknown key {:?}", entry.key))),
            Err(message) => return Err(bad_line(entry.line, format!("{}: {message}", entry.key))),
        }
    }
    Ok(())
}

// ---- Help -------------------------------------------------------------------------------------

const USAGE: &str = "\
Usage:
  consult-edge serve  [OPTIONS]
  consult-edge token  --sub ID --role patient|doctor|admin [--ttl SECS] [--sid SID] [--refresh]
                      [--data-dir DIR] [key options]      # prints one token on stdout
  consult-edge loadgen [OPTIONS]                          # see `consult-edge loadgen --help`
";

const PRECEDENCE: &str = "\
Every option can also be set by its environment variable or by its key in the config file;
the command line wins over the environment, which wins over the file. Durations ending in
_ms are milliseconds, _s seconds. Booleans: true/false, 1/0, yes/no, on/off.
";

fn top_help() -> String {
    let mut out = format!(
        "consult-edge: edge gateway for online medical consultation\n\n{USAGE}\n{PRECEDENCE}"
    );
    let mut serve = command_options(Scope::Serve);
    serve.retain(|o| o.scope == Scope::Serve);
    write_options(&mut out, "Options of serve", &serve);
    write_options(
        &mut out,
        "Options of serve and token",
        &command_options(Scope::Shared),
    );
    let own: Vec<&OptionSpec> = TOKEN_OPTIONS.iter().collect();
    write_options(&mut out, "Options of token only (command line)", &own);
    out
}

fn serve_help() -> String {
    let mut out = format!("Usage: consult-edge serve [OPTIONS]\n\n{PRECEDENCE}");
    write_options(&mut out, "Options", &command_options(Scope::Serve));
    out
}

fn token_help() -> String {
    let mut out = format!(
        "Usage: consult-edge token --sub ID --role patient|doctor|admin [OPTIONS]\n\
         Prints one signed token on stdout, with the key `serve` uses.\n\n{PRECEDENCE}"
    );
    let own: Vec<&OptionSpec> = TOKEN_OPTIONS.iter().collect();
    write_options(&mut out, "Token options (command line only)", &own);
    write_options(
        &mut out,
        "Key and data options",
        &command_options(Scope::Shared),
    );
    out
}

fn write_options(out: &mut String, title: &str, options: &[&OptionSpec]) {
    let _ = writeln!(out, "\n{title}:");
    for spec in options {
        let left = if spec.value_name.is_empty() {
            spec.flag()
        } else {
            format!("{} {}", spec.flag(), spec.value_name)
        };
        let _ = writeln!(out, "  {left:<34} {}", spec.help);
        let mut where_ = String::new();
        if spec.sources != Sources::FlagOnly {
            let _ = write!(where_, "env {}", spec.env_var());
        }
        if spec.sources == Sources::All {
            let _ = write!(where_, ", file key {}", spec.key);
        }
        if spec.sources != Sources::FlagOnly {
            let _ = write!(where_, ", default {}", (spec.default)());
        }
        if !where_.is_empty() {
            let _ = writeln!(out, "  {:<34} [{where_}]", "");
        }
    }
}
