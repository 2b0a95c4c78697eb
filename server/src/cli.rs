//! The command line (clap derive): `adledger serve [--listen ADDR] [--data-dir DIR]
//! [--config FILE] [--backend local|aws] [--deterministic SEED]`.
//!
//! Flags only; environment variables and the config file are layered under them by
//! [`crate::config`], which keeps the precedence rules in one tested place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{BackendKind, Overrides};

/// A hash-chained, verifiable ledger of classified ads.
#[derive(Debug, Parser)]
#[command(name = "adledger", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API.
    ///
    /// Settings come from flags, then ADLEDGER_* environment variables, then the TOML
    /// config file (keys: listen, data_dir, backend, deterministic), then defaults.
    Serve(ServeArgs),
}

/// Flags of `adledger serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port [env: ADLEDGER_LISTEN] [default:
    /// 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Data directory of the local backend [env: ADLEDGER_DATA_DIR] [default:
    /// ./adledger-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// TOML config file [env: ADLEDGER_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Storage backend [env: ADLEDGER_BACKEND] [default: local]
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub backend: Option<BackendKind>,

    /// Reproducible run: logical clock from 2020-01-01T00:00:00Z and ids from SEED
    /// [env: ADLEDGER_DETERMINISTIC]
    #[arg(long, value_name = "SEED")]
    pub deterministic: Option<u64>,
}

impl ServeArgs {
    /// The settings these flags name, as the top configuration layer.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            config: self.config.clone(),
            backend: self.backend,
            deterministic: self.deterministic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_parse() {
        let cli = Cli::try_parse_from([
            "adledger",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/d",
            "--backend",
            "aws",
            "--deterministic",
            "42",
        ])
        .expect("valid flags");
        let Command::Serve(args) = cli.command;
        let o = args.overrides();
        assert_eq!(o.listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(o.data_dir, Some(PathBuf::from("/tmp/d")));
        assert_eq!(o.backend, Some(BackendKind::Aws));
        assert_eq!(o.deterministic, Some(42));
        assert!(Cli::try_parse_from(["adledger", "serve", "--backend", "s3"]).is_err());
    }
}
