//! The command line (clap derive): `adledger serve [--listen ADDR] [--data-dir DIR]
//! [--config FILE] [--backend local|aws] [--deterministic SEED]`, `adledger verify` and
//! `adledger proof verify FILE` (their flags live with them, in [`crate::verify_cmd`] and
//! [`crate::proof_cmd`]).
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

    /// Verify a stopped data directory's journal: re-hash every block, check every link
    /// and Merkle node, recompute the digest.
    ///
    /// Exits 0 when it verifies, 1 at the first mismatch (naming the sequence, ad, version
    /// and field), 2 when it cannot run (no journal, directory in use, bad config).
    Verify(crate::verify_cmd::VerifyArgs),

    /// Work with proof bundles saved from GET /publisher/{p}/ad/{adId}/proof, offline.
    Proof(crate::proof_cmd::ProofArgs),

    /// Rebuild the state store and the search index from the journal alone, verifying
    /// the hash chain; resumes after an interruption. --shadow builds aside and prints
    /// the differences; --swap then replaces the live read models.
    Rebuild(crate::maintenance_cmd::RebuildArgs),

    /// Re-project one ad's revisions (optionally only those in [--from, --to]) into the
    /// read models.
    Replay(crate::maintenance_cmd::ReplayArgs),

    /// Create, list, restore or delete snapshots of the read models.
    Snapshot(crate::maintenance_cmd::SnapshotArgs),

    /// Write the journal's blocks (Ion binary or JSON lines) with the digest at the end.
    Export(crate::maintenance_cmd::ExportArgs),

    /// Verify an export and import it into an empty journal.
    Import(crate::maintenance_cmd::ImportArgs),

    /// Set up the AWS backend: `adledger aws init [--dry-run]` creates its DynamoDB
    /// tables and, with `--search opensearch`, its OpenSearch index (idempotent).
    Aws(crate::aws_init::AwsArgs),
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

    /// Enables the /admin/* routes, which then require `Authorization: Bearer TOKEN`
    /// [env: ADLEDGER_ADMIN_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<crate::config::AdminToken>,

    /// Take snapshots by schedule: off, hourly, daily, weekly, monthly or `every N`
    /// with s/m/h/d, such as `every 6h` [env: ADLEDGER_SNAPSHOT_SCHEDULE] [default: off]
    #[arg(long, value_name = "SCHEDULE")]
    pub snapshot_schedule: Option<crate::snapshot_schedule::ScheduleSetting>,

    /// How many snapshots the schedule keeps, deleting older ones
    /// [env: ADLEDGER_SNAPSHOT_KEEP] [default: 7]
    #[arg(long, value_name = "N", value_parser = crate::snapshot_schedule::parse_keep)]
    pub snapshot_keep: Option<usize>,

    /// The AWS backend's settings.
    #[command(flatten)]
    pub aws: crate::aws_init::AwsFlags,
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
            admin_token: self.admin_token.clone(),
            snapshot_schedule: self.snapshot_schedule,
            snapshot_keep: self.snapshot_keep,
            ..self.aws.overrides()
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
        let Command::Serve(args) = cli.command else {
            panic!("parsed as another subcommand");
        };
        let o = args.overrides();
        assert_eq!(o.listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(o.data_dir, Some(PathBuf::from("/tmp/d")));
        assert_eq!(o.backend, Some(BackendKind::Aws));
        assert_eq!(o.deterministic, Some(42));
        assert!(Cli::try_parse_from(["adledger", "serve", "--backend", "s3"]).is_err());
    }
}
