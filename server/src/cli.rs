//! The command line (clap derive): one subcommand per command, each defined with its
//! flags in its own module; the storage flags they share are
//! [`crate::config::StorageArgs`], `serve`'s are [`crate::config::ServeArgs`].
//!
//! Flags and their `ADLEDGER_*` variables are read here, by clap; the config file and the
//! defaults are layered under them by [`crate::config`].

use std::ffi::OsStr;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    Serve(crate::config::ServeArgs),

    /// Verify a stopped data directory's journal: re-hash every block, check every link
    /// and Merkle node, recompute the digest.
    ///
    /// Exits 0 when it verifies, 1 at the first mismatch (naming the sequence, ad, version
    /// and field), 2 when it cannot run (no journal, directory in use, bad config).
    Verify(crate::verify_cmd::VerifyArgs),

    /// Work with proof bundles saved from GET /publisher/{p}/ad/{adId}/proof, offline.
    Proof(crate::proof_cmd::ProofArgs),

    /// Work with the ledger feed offline: `adledger feed verify FILE` checks saved events
    /// (no gap, duplicate, reordering or alteration; digests consistent).
    Feed(crate::feed_cmd::FeedArgs),

    /// Rebuild the state store and the search index from the journal alone, verifying
    /// the hash chain; resumes after an interruption. --shadow builds aside and prints
    /// the differences; --swap then replaces the live read models.
    Rebuild(crate::rebuild_cmd::RebuildArgs),

    /// Re-project one ad's revisions (optionally only those in [--from, --to]) into the
    /// read models.
    Replay(crate::replay_cmd::ReplayArgs),

    /// Create, list, restore or delete snapshots of the read models.
    Snapshot(crate::snapshot_cmd::SnapshotArgs),

    /// Write the journal's blocks (Ion binary or JSON lines) with the digest at the end.
    Export(crate::export_cmd::ExportArgs),

    /// Verify an export and import it into an empty journal.
    Import(crate::import_cmd::ImportArgs),

    /// Rewrite a stopped local ledger's journal compressed (about 1.2× its block bytes on
    /// disk instead of 2.6×), verified against the old one's digest before it replaces it;
    /// --compression none rewrites it plain.
    Compact(crate::compact_cmd::CompactArgs),

    /// Print a development token (HS256, for the configured secret: ADLEDGER_JWT_SECRET or
    /// --jwt-secret-file), for `serve --auth hs256`.
    DevToken(crate::dev_token_cmd::DevTokenArgs),

    /// Set up the AWS backend: `adledger aws init [--dry-run]` creates its DynamoDB
    /// tables and, with `--search opensearch`, its OpenSearch index (idempotent).
    Aws(crate::aws_cmd::AwsArgs),
}

impl Cli {
    /// Parses the process's arguments and `ADLEDGER_*` variables, exiting with clap's
    /// message and code 2 on a bad one. A variable set to the empty string counts as
    /// unset (`ADLEDGER_BACKEND= adledger serve` runs on the default backend).
    pub fn parse_process() -> Cli {
        let mut command = ignore_empty_env(Cli::command(), &|name| std::env::var_os(name));
        let matches = command
            .try_get_matches_from_mut(std::env::args_os())
            .unwrap_or_else(|error| error.exit());
        Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.format(&mut command).exit())
    }
}

/// Drops the variable of every argument (in every subcommand) whose variable is set but
/// empty, so clap neither parses `""` as a value nor lets it hide the config file.
fn ignore_empty_env(
    command: clap::Command,
    lookup: &dyn Fn(&OsStr) -> Option<std::ffi::OsString>,
) -> clap::Command {
    command
        .mut_args(|arg| {
            let empty = arg
                .get_env()
                .and_then(lookup)
                .is_some_and(|value| value.is_empty());
            if empty { arg.env(None) } else { arg }
        })
        .mut_subcommands(|sub| ignore_empty_env(sub, lookup))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::BackendKind;

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

    #[test]
    fn storage_flags_go_before_or_after_a_snapshot_action() {
        for argv in [
            ["adledger", "snapshot", "--data-dir", "/d", "list"],
            ["adledger", "snapshot", "list", "--data-dir", "/d"],
        ] {
            let cli = Cli::try_parse_from(argv).expect("valid flags");
            let Command::Snapshot(args) = cli.command else {
                panic!("parsed as another subcommand");
            };
            assert_eq!(args.storage.data_dir, Some(PathBuf::from("/d")), "{argv:?}");
        }
    }

    #[test]
    fn every_command_documents_the_variables_of_its_storage_flags() {
        for path in [
            &["serve"][..],
            &["verify"],
            &["rebuild"],
            &["replay"],
            &["snapshot"],
            &["export"],
            &["import"],
            &["compact"],
            &["aws", "init"],
        ] {
            let mut command = Cli::command();
            command.build();
            let mut sub = &mut command;
            for name in path {
                sub = sub.find_subcommand_mut(name).expect("subcommand exists");
            }
            let help = sub.render_long_help().to_string();
            for variable in [
                "ADLEDGER_DATA_DIR",
                "ADLEDGER_CONFIG",
                "ADLEDGER_BACKEND",
                "ADLEDGER_TABLE_PREFIX",
            ] {
                assert!(help.contains(variable), "{path:?} --help lacks {variable}");
            }
        }
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let lookup = |name: &OsStr| (name == "ADLEDGER_BACKEND").then(std::ffi::OsString::new);
        let mut command = ignore_empty_env(Cli::command(), &lookup);
        command.build();
        let serve = command
            .find_subcommand("serve")
            .expect("serve exists")
            .get_arguments()
            .map(|arg| (arg.get_id().to_string(), arg.get_env().is_some()))
            .collect::<Vec<_>>();
        assert!(serve.contains(&("backend".to_string(), false)), "{serve:?}");
        assert!(serve.contains(&("data_dir".to_string(), true)), "{serve:?}");
    }
}
