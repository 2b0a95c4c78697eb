//! The `adledger` binary: parse the command line, run the command, turn an error into a
//! one-line message on stderr and exit code 1.

use std::io::Write;
use std::process::ExitCode;

use adledger::cli::{Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => adledger::serve::serve_command(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Nothing more can be done if stderr itself is gone.
            let _ = writeln!(std::io::stderr(), "adledger: {error}");
            ExitCode::FAILURE
        }
    }
}
