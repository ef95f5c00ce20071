//! `consult-edge`: command line only — parse, then call into the library.

use consult_edge::config::{parse_command, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_command(&args, &|key| std::env::var(key).ok()) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("consult-edge: {error}");
            return ExitCode::from(error.exit_code() as u8);
        }
    };
    consult_edge::observe::init_logging();
    match command {
        Command::Help(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Command::Serve(settings) => match consult_edge::gateway::serve(settings) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("consult-edge: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Token(args) => match consult_edge::gateway::mint_token(&args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("consult-edge: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Loadgen(_args) => {
            eprintln!("consult-edge: loadgen is not built yet");
            ExitCode::FAILURE
        }
    }
}
