//! Command line, environment and config file: precedence, errors (exit 2), help, reload.

use std::collections::HashMap;
use std::io::Write;

use consult_edge::config::{
    parse_command, CliError, Command, Settings, TokenArgs, TokenRole, SETTING_OPTIONS,
    TOKEN_OPTIONS,
};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn serve(list: &[&str], env: &HashMap<&str, String>) -> Result<Settings, CliError> {
    let lookup = |name: &str| env.get(name).cloned();
    match parse_command(&args(list), &lookup)? {
        Command::Serve(settings) => Ok(settings),
        other => panic!("expected serve, got {other:?}"),
    }
}

fn token(list: &[&str]) -> Result<TokenArgs, CliError> {
    match parse_command(&args(list), &no_env)? {
        Command::Token(token) => Ok(token),
        other => panic!("expected token, got {other:?}"),
    }
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write config");
    file
}

fn error_of(list: &[&str], env: &HashMap<&str, String>) -> CliError {
    let lookup = |name: &str| env.get(name).cloned();
    let err = parse_command(&args(list), &lookup).expect_err("should be rejected");
    assert_eq!(err.exit_code(), 2, "error={err}");
    err
}

// ---- Precedence -------------------------------------------------------------------------------

#[test]
fn precedence_no_source_gives_spec_default() {
    let settings = serve(&["serve"], &HashMap::new()).expect("parse");
    assert_eq!(settings.head_timeout_ms, 10_000);
    assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(settings.data_dir.to_str(), Some("./data"));
}

#[test]
fn precedence_file_overrides_default() {
    let file = config_file("head_timeout_ms = 111\n");
    let path = file.path().to_str().expect("utf-8 path");
    let settings = serve(&["serve", "--config", path], &HashMap::new()).expect("parse");
    assert_eq!(settings.head_timeout_ms, 111);
    assert_eq!(settings.config_file(), Some(file.path()));
}

#[test]
fn precedence_env_overrides_file() {
    let file = config_file("head_timeout_ms = 111\n");
    let env = HashMap::from([
        ("CONSULT_EDGE_HEAD_TIMEOUT_MS", "222".to_string()),
        (
            "CONSULT_EDGE_CONFIG",
            file.path().to_str().expect("utf-8").to_string(),
        ),
    ]);
    let settings = serve(&["serve"], &env).expect("parse");
    assert_eq!(settings.head_timeout_ms, 222);
}

#[test]
fn precedence_flag_overrides_env_and_file() {
    let file = config_file("head_timeout_ms = 111\n");
    let path = file.path().to_str().expect("utf-8 path");
    let env = HashMap::from([("CONSULT_EDGE_HEAD_TIMEOUT_MS", "222".to_string())]);
    let settings =
        serve(&["serve", "--config", path, "--head-timeout-ms=333"], &env).expect("parse");
    assert_eq!(settings.head_timeout_ms, 333);
    let settings = serve(
        &["serve", "--config", path, "--head-timeout-ms", "444"],
        &env,
    )
    .expect("parse");
    assert_eq!(settings.head_timeout_ms, 444);
}

#[test]
fn precedence_empty_env_counts_as_unset() {
    let env = HashMap::from([("CONSULT_EDGE_HEAD_TIMEOUT_MS", String::new())]);
    assert_eq!(
        serve(&["serve"], &env).expect("parse").head_timeout_ms,
        10_000
    );
}

#[test]
fn precedence_reload_rereads_file_keeps_flags_and_env() {
    let mut file = config_file("head_timeout_ms = 111\nbody_timeout_ms = 5\nheartbeat_ms = 7\n");
    let path = file.path().to_str().expect("utf-8 path").to_string();
    let env = HashMap::from([("CONSULT_EDGE_BODY_TIMEOUT_MS", "222".to_string())]);
    let settings =
        serve(&["serve", "--config", &path, "--heartbeat-ms", "9"], &env).expect("parse");
    assert_eq!(
        (
            settings.head_timeout_ms,
            settings.body_timeout_ms,
            settings.heartbeat_ms
        ),
        (111, 222, 9)
    );

    file.as_file_mut().set_len(0).expect("truncate");
    std::fs::write(
        file.path(),
        "head_timeout_ms = 123\nbody_timeout_ms = 6\nheartbeat_ms = 8\n",
    )
    .expect("rewrite");
    let reloaded = settings.reload_file().expect("reload");
    assert_eq!(
        (
            reloaded.head_timeout_ms,
            reloaded.body_timeout_ms,
            reloaded.heartbeat_ms
        ),
        (123, 222, 9)
    );

    std::fs::write(file.path(), "head_timeout_ms = nope\n").expect("rewrite");
    let err = settings.reload_file().expect_err("bad file on reload");
    assert!(
        matches!(err, CliError::ConfigLine { line: 1, .. }),
        "err={err}"
    );
}

#[test]
fn precedence_every_setting_has_env_and_file_names() {
    for option in SETTING_OPTIONS {
        assert_eq!(
            option.env_var(),
            format!("CONSULT_EDGE_{}", option.key.to_uppercase())
        );
        assert_eq!(option.flag(), format!("--{}", option.key.replace('_', "-")));
    }
    let env = HashMap::from([("CONSULT_EDGE_DATA_DIR", "/srv/edge".to_string())]);
    assert_eq!(
        serve(&["serve"], &env).expect("parse").data_dir.to_str(),
        Some("/srv/edge")
    );
}

// ---- Config file ------------------------------------------------------------------------------

#[test]
fn file_comments_quotes_and_lists_parse() {
    let file = config_file(
        "# consult-edge test config\n\
         \n\
         listen = \"127.0.0.1:9999\"   # quoted\n\
         allowed_origins = https://a.example, https://b.example\n\
         jwt_issuer = 'https://idp.example/#realm'\n\
         dev = yes\n",
    );
    let path = file.path().to_str().expect("utf-8 path");
    let settings = serve(&["serve", "--config", path], &HashMap::new()).expect("parse");
    assert_eq!(settings.listen.to_string(), "127.0.0.1:9999");
    assert_eq!(
        settings.allowed_origins,
        vec!["https://a.example", "https://b.example"]
    );
    assert_eq!(
        settings.jwt_issuer.as_deref(),
        Some("https://idp.example/#realm")
    );
    assert!(settings.dev);
}

#[test]
fn file_unknown_key_names_file_and_line() {
    let file = config_file("# ok\nlisten = 127.0.0.1:1\nhead_timout_ms = 5\n");
    let path = file.path().to_str().expect("utf-8 path");
    let err = error_of(&["serve", "--config", path], &HashMap::new());
    assert!(
        matches!(err, CliError::ConfigLine { line: 3, .. }),
        "err={err}"
    );
    let text = err.to_string();
    assert!(text.contains(path) && text.contains(":3:") && text.contains("head_timout_ms"));
}

#[test]
fn file_malformed_line_and_value_rejected() {
    let file = config_file("listen\n");
    let path = file.path().to_str().expect("utf-8 path");
    let err = error_of(&["serve", "--config", path], &HashMap::new());
    assert!(
        matches!(err, CliError::ConfigLine { line: 1, .. }),
        "err={err}"
    );

    let file = config_file("\nmax_connections = many\n");
    let path = file.path().to_str().expect("utf-8 path");
    let err = error_of(&["serve", "--config", path], &HashMap::new());
    assert!(
        matches!(err, CliError::ConfigLine { line: 2, .. }),
        "err={err}"
    );
}

#[test]
fn file_missing_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.conf");
    let err = error_of(
        &["serve", "--config", path.to_str().expect("utf-8")],
        &HashMap::new(),
    );
    assert!(
        matches!(err, CliError::ConfigUnreadable { .. }),
        "err={err}"
    );
}

#[test]
fn file_endless_device_is_refused_not_read() {
    // /dev/zero reports length 0 and never ends: refused as not a regular file, not read into
    // memory until the box runs out.
    let err = error_of(&["serve", "--config", "/dev/zero"], &HashMap::new());
    assert!(
        matches!(&err, CliError::ConfigUnreadable { message, .. } if message.contains("regular file")),
        "err={err}"
    );
}

// ---- Errors -----------------------------------------------------------------------------------

#[test]
fn error_unknown_option_exit_2() {
    let err = error_of(&["serve", "--no-such-thing", "1"], &HashMap::new());
    assert!(matches!(err, CliError::UnknownOption { .. }), "err={err}");
    let err = error_of(&["serve", "stray"], &HashMap::new());
    assert!(matches!(err, CliError::UnknownOption { .. }), "err={err}");
}

#[test]
fn error_serve_only_option_on_token_exit_2() {
    let err = error_of(
        &[
            "token",
            "--sub",
            "p1",
            "--role",
            "patient",
            "--listen",
            "127.0.0.1:1",
        ],
        &HashMap::new(),
    );
    assert!(
        matches!(
            err,
            CliError::UnknownOption {
                command: "token",
                ..
            }
        ),
        "err={err}"
    );
}

#[test]
fn error_missing_value_exit_2() {
    let err = error_of(&["serve", "--listen"], &HashMap::new());
    assert_eq!(err, CliError::MissingValue("--listen".to_string()));
    let err = error_of(&["serve", "--data-dir", "--dev"], &HashMap::new());
    assert_eq!(err, CliError::MissingValue("--data-dir".to_string()));
}

#[test]
fn error_malformed_flag_value_exit_2() {
    for bad in [
        &["serve", "--listen", "nowhere"][..],
        &["serve", "--head-timeout-ms", "0"][..],
        &["serve", "--head-timeout-ms", "-1"][..],
        &["serve", "--max-connections", "lots"][..],
        &["serve", "--dev=perhaps"][..],
    ] {
        let err = error_of(bad, &HashMap::new());
        assert!(
            matches!(err, CliError::BadValue { .. }),
            "args={bad:?} err={err}"
        );
    }
}

#[test]
fn error_open_consultation_cap_below_one_exit_2() {
    let err = error_of(
        &["serve", "--max-open-consultations-per-patient", "0"],
        &HashMap::new(),
    );
    assert!(matches!(err, CliError::BadValue { .. }), "err={err}");
    let env = HashMap::from([(
        "CONSULT_EDGE_MAX_OPEN_CONSULTATIONS_PER_PATIENT",
        "0".to_string(),
    )]);
    let err = error_of(&["serve"], &env);
    assert!(
        err.to_string()
            .contains("CONSULT_EDGE_MAX_OPEN_CONSULTATIONS_PER_PATIENT"),
        "err={err}"
    );
    let file = config_file("max_open_consultations_per_patient = 0\n");
    let path = file.path().to_string_lossy().into_owned();
    let err = error_of(&["serve", "--config", &path], &HashMap::new());
    assert!(
        err.to_string()
            .contains("max_open_consultations_per_patient"),
        "err={err}"
    );
    let ok = serve(
        &["serve", "--max-open-consultations-per-patient", "1"],
        &HashMap::new(),
    );
    assert_eq!(ok.map(|s| s.max_open_consultations_per_patient), Ok(1));
}

#[test]
fn error_malformed_env_value_names_variable() {
    let env = HashMap::from([("CONSULT_EDGE_HEARTBEAT_MS", "soon".to_string())]);
    let err = error_of(&["serve"], &env);
    assert!(
        err.to_string().contains("CONSULT_EDGE_HEARTBEAT_MS"),
        "err={err}"
    );
}

#[test]
fn error_conflicting_keys_exit_2() {
    let err = error_of(
        &["serve", "--jwt-secret-file", "a", "--jwt-public-key", "b"],
        &HashMap::new(),
    );
    assert!(matches!(err, CliError::Conflict(_)), "err={err}");
    let err = error_of(&["serve", "--heartbeat-ms", "50000"], &HashMap::new());
    assert!(matches!(err, CliError::Conflict(_)), "err={err}");
    let err = error_of(
        &["serve", "--outbound-queue-messages", "7"],
        &HashMap::new(),
    );
    assert!(matches!(err, CliError::Conflict(_)), "err={err}");
}

#[test]
fn error_no_or_unknown_command_exit_2() {
    assert_eq!(error_of(&[], &HashMap::new()), CliError::NoCommand);
    let err = error_of(&["serv"], &HashMap::new());
    assert_eq!(err, CliError::UnknownCommand("serv".to_string()));
}

// ---- token and loadgen ------------------------------------------------------------------------

#[test]
fn token_defaults_ttl_from_kind() {
    let access = token(&["token", "--sub", "p1", "--role", "patient"]).expect("parse");
    assert_eq!(
        (access.ttl_s, access.refresh, access.role),
        (900, false, TokenRole::Patient)
    );
    assert_eq!(access.sid, None);
    let refresh = token(&[
        "token",
        "--sub",
        "d1",
        "--role=doctor",
        "--refresh",
        "--sid",
        "s9",
    ])
    .expect("parse");
    assert_eq!((refresh.ttl_s, refresh.refresh), (604_800, true));
    assert_eq!(refresh.sid.as_deref(), Some("s9"));
    let short = token(&[
        "token",
        "--sub",
        "a",
        "--role",
        "admin",
        "--ttl",
        "5",
        "--data-dir",
        "/x",
    ])
    .expect("parse");
    assert_eq!(short.ttl_s, 5);
    assert_eq!(short.settings.data_dir.to_str(), Some("/x"));
}

#[test]
fn token_missing_or_bad_role_exit_2() {
    let err = error_of(&["token", "--sub", "p1"], &HashMap::new());
    assert!(
        matches!(
            err,
            CliError::MissingOption {
                option: "--role",
                ..
            }
        ),
        "err={err}"
    );
    let err = error_of(&["token", "--role", "patient"], &HashMap::new());
    assert!(
        matches!(
            err,
            CliError::MissingOption {
                option: "--sub",
                ..
            }
        ),
        "err={err}"
    );
    let err = error_of(
        &["token", "--sub", "p1", "--role", "nurse"],
        &HashMap::new(),
    );
    assert!(matches!(err, CliError::BadValue { .. }), "err={err}");
}

#[test]
fn loadgen_gets_raw_arguments() {
    let command = parse_command(&args(&["loadgen", "--url", "ws://x", "--help"]), &no_env);
    assert_eq!(
        command,
        Ok(Command::Loadgen(args(&["--url", "ws://x", "--help"])))
    );
}

// ---- Help -------------------------------------------------------------------------------------

fn help_of(list: &[&str]) -> String {
    match parse_command(&args(list), &no_env) {
        Ok(Command::Help(text)) => text,
        other => panic!("expected help, got {other:?}"),
    }
}

#[test]
fn help_serve_lists_every_option_with_env_and_default() {
    let text = help_of(&["serve", "--listen", "127.0.0.1:1", "--help"]);
    for option in SETTING_OPTIONS {
        assert!(text.contains(&option.flag()), "missing {}", option.flag());
        assert!(
            text.contains(&option.env_var()),
            "missing {}",
            option.env_var()
        );
        let default = format!("default {}", (option.default)());
        assert!(text.contains(&default), "missing {default}");
    }
    assert!(text.contains("--config") && text.contains("CONSULT_EDGE_CONFIG"));
    assert!(text.contains("default 10000") && text.contains("default 127.0.0.1:8080"));
}

#[test]
fn help_top_level_lists_every_option() {
    for flag in ["--help", "-h"] {
        let text = help_of(&[flag]);
        for option in SETTING_OPTIONS.iter().chain(TOKEN_OPTIONS) {
            assert!(text.contains(&option.flag()), "missing {}", option.flag());
        }
        assert!(text.contains("loadgen"));
    }
}

#[test]
fn help_token_lists_its_options() {
    let text = help_of(&["token", "-h"]);
    for flag in [
        "--sub",
        "--role",
        "--ttl",
        "--sid",
        "--refresh",
        "--data-dir",
        "--jwt-secret-file",
    ] {
        assert!(text.contains(flag), "missing {flag}");
    }
    assert!(!text.contains("--head-timeout-ms"));
}

#[test]
fn settings_struct_update_works_outside_crate() {
    let settings = Settings {
        heartbeat_ms: 50,
        read_timeout_ms: 150,
        ..Settings::default()
    };
    assert_eq!((settings.heartbeat_ms, settings.read_timeout_ms), (50, 150));
    assert_eq!(settings.config_file(), None);
    let reloaded = settings.reload_file().expect("no file: defaults");
    assert_eq!(reloaded, Settings::default());
}
