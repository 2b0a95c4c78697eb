//! The `adledger` binary: parse the command line, run the command, turn an error into a
//! one-line message on stderr and exit code 1.

use std::io::Write;
use std::process::ExitCode;

use adledger::cli::{Cli, Command};

/// jemalloc instead of glibc's malloc: under the server's many threads glibc's arenas
/// kept the RSS near twice the live heap over a soak (heaptrack: 342 MB live at 700 MB
/// RSS), and it did not return memory between bursts; jemalloc held the same run to about
/// 0.6× the RSS and created ads faster. See bench/README.md, "Memory".
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_process();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Serve(args) => adledger::serve::serve_command(&args).map_err(Into::into),
        Command::DevToken(args) => {
            adledger::dev_token_cmd::dev_token_command(&args).map_err(Into::into)
        }
        // These print their own result and choose their exit code (0, 1 or 2).
        Command::Verify(args) => return adledger::verify_cmd::verify_command(&args),
        Command::Proof(args) => return adledger::proof_cmd::proof_command(&args),
        Command::Feed(args) => return adledger::feed_cmd::feed_command(&args),
        Command::Rebuild(args) => return adledger::rebuild_cmd::rebuild_command(&args),
        Command::Replay(args) => return adledger::replay_cmd::replay_command(&args),
        Command::Snapshot(args) => return adledger::snapshot_cmd::snapshot_command(&args),
        Command::Export(args) => return adledger::export_cmd::export_command(&args),
        Command::Import(args) => return adledger::import_cmd::import_command(&args),
        Command::Compact(args) => return adledger::compact_cmd::compact_command(&args),
        Command::Aws(args) => return adledger::aws_cmd::aws_command(&args),
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
