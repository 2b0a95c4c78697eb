//! `adledger aws init [--dry-run]`: creates the AWS backend's DynamoDB tables with
//! on-demand capacity and, with `--search opensearch`, the OpenSearch index with its
//! mapping. Running it twice is harmless: an existing table with the right keys, or an
//! existing index, is left as it is. It takes the storage flags every command takes
//! ([`StorageArgs`]).
//!
//! Region and credentials come from the standard AWS chain; for DynamoDB Local any static
//! credentials work: `AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
//! AWS_REGION=us-east-1 adledger aws init --dynamodb-endpoint http://127.0.0.1:8000`.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};

#[cfg(feature = "aws")]
use crate::backend::{dynamo_settings, opensearch_settings};
#[cfg(feature = "aws")]
use crate::config::SearchKind;
use crate::config::{Config, StorageArgs};

/// `adledger aws …`.
#[derive(Debug, Args)]
pub struct AwsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AwsCommand,
}

/// The `aws` subcommands.
#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Create the DynamoDB tables (on-demand capacity) and, with --search opensearch, the
    /// OpenSearch index; harmless to run again.
    Init(InitArgs),
}

/// Flags of `adledger aws init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The AWS settings (and where a tantivy index would be).
    #[command(flatten)]
    pub storage: StorageArgs,

    /// Print what would be created, without contacting AWS.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `adledger aws …`; prints its result; exit code 0 on success, 1 on failure.
pub fn aws_command(args: &AwsArgs) -> ExitCode {
    let AwsCommand::Init(init) = &args.command;
    let mut out = std::io::stdout();
    match init_command(init, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Nothing more can be done if stderr itself is gone.
            let _ = writeln!(std::io::stderr(), "adledger aws init: {message}");
            ExitCode::FAILURE
        }
    }
}

fn config_of(args: &InitArgs) -> Result<Config, String> {
    args.storage.load().map_err(|e| e.to_string())
}

/// DynamoDB table names: 3 to 255 characters of `[A-Za-z0-9_.-]`.
fn check_prefix(prefix: &str) -> Result<(), String> {
    let valid = prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid || prefix.len() > 240 {
        return Err(format!(
            "table prefix {prefix:?} is not usable in DynamoDB table names: use at most 240 \
             characters of A-Z, a-z, 0-9, `_`, `.` and `-`"
        ));
    }
    Ok(())
}

#[cfg(not(feature = "aws"))]
fn init_command(args: &InitArgs, _out: &mut dyn Write) -> Result<(), String> {
    // The settings are still checked, so a bad config is reported as such.
    check_prefix(&config_of(args)?.table_prefix)?;
    Err(crate::backend::BackendError::NotCompiled("aws").to_string())
}

#[cfg(feature = "aws")]
fn init_command(args: &InitArgs, out: &mut dyn Write) -> Result<(), String> {
    use adledger_aws::TableNames;
    use adledger_aws::tables::{self, Created};

    let config = config_of(args)?;
    check_prefix(&config.table_prefix)?;
    let specs = TableNames::with_prefix(&config.table_prefix).specs();
    let say = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(|e| format!("cannot write to stdout: {e}"))
    };
    let opensearch = match config.search {
        SearchKind::Tantivy => None,
        SearchKind::Opensearch => Some(opensearch_settings(&config)?),
    };
    let search_line = format!(
        "search: tantivy in {} (created by `adledger serve`; nothing to create here)",
        config.data_dir.join("search").display()
    );
    if args.dry_run {
        for spec in &specs {
            say(out, format!("would create {spec}"))?;
        }
        return match &opensearch {
            None => say(out, search_line),
            Some(settings) => say(
                out,
                format!(
                    "would create OpenSearch index {} at {} with settings and mapping:\n{}",
                    settings.index,
                    settings.url,
                    serde_json::to_string_pretty(&adledger_aws::opensearch::index_definition())
                        .map_err(|e| format!("cannot print the index definition: {e}"))?
                ),
            ),
        };
    }
    let settings = dynamo_settings(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let client = adledger_aws::connect(&settings).await;
        for spec in &specs {
            let line = match tables::create(&client, spec).await {
                Ok(Created::New) => format!("created {spec}"),
                Ok(Created::AlreadyExists) => {
                    format!("{spec}: already exists with the right keys; left as is")
                }
                Err(e) => return Err(format!("cannot create table {}: {e}", spec.name)),
            };
            say(out, line)?;
        }
        let Some(settings) = &opensearch else {
            return say(out, search_line);
        };
        let index = adledger_aws::OpenSearchIndex::connect(settings)
            .await
            .map_err(|e| format!("cannot reach OpenSearch at {}: {e}", settings.url))?;
        let line = match index.create_index().await {
            Ok(adledger_aws::opensearch::IndexCreated::New) => format!(
                "created OpenSearch index {} at {} with its mapping",
                settings.index, settings.url
            ),
            Ok(adledger_aws::opensearch::IndexCreated::AlreadyExists) => format!(
                "OpenSearch index {} at {}: already exists; left as is",
                settings.index, settings.url
            ),
            Err(e) => {
                return Err(format!(
                    "cannot create OpenSearch index {}: {e}",
                    settings.index
                ));
            }
        };
        say(out, line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_must_make_valid_table_names() {
        assert!(check_prefix("adledger-").is_ok());
        assert!(check_prefix("prod.v2_").is_ok());
        assert!(check_prefix("bad prefix").is_err());
        assert!(check_prefix(&"x".repeat(241)).is_err());
    }

    #[cfg(feature = "aws")]
    #[test]
    fn dry_run_names_the_tables_without_contacting_aws() {
        let args = InitArgs {
            storage: StorageArgs {
                // Nothing listens here; a dry run must not try.
                dynamodb_endpoint: Some("http://127.0.0.1:9".into()),
                table_prefix: Some("dry-".into()),
                ..StorageArgs::default()
            },
            dry_run: true,
        };
        let mut out = Vec::new();
        init_command(&args, &mut out).expect("dry run");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("would create table dry-journal (partition key pk S, sort key sk N"));
        assert!(text.contains("would create table dry-state (partition key publisherId S"));
        assert!(text.contains("search: tantivy"));
    }

    #[cfg(feature = "aws")]
    #[test]
    fn dry_run_prints_the_opensearch_index_and_its_mapping() {
        let args = InitArgs {
            storage: StorageArgs {
                dynamodb_endpoint: Some("http://127.0.0.1:9".into()),
                table_prefix: Some("dry-".into()),
                search: Some(SearchKind::Opensearch),
                // Nothing listens here either.
                opensearch_url: Some("http://127.0.0.1:9".into()),
                opensearch_auth: Some(crate::config::OpenSearchAuthKind::None),
                ..StorageArgs::default()
            },
            dry_run: true,
        };
        let mut out = Vec::new();
        init_command(&args, &mut out).expect("dry run");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("would create OpenSearch index dry-ads at http://127.0.0.1:9"),
            "{text}"
        );
        assert!(text.contains("\"dynamic\": \"strict\""), "{text}");
        assert!(text.contains("\"gc_deletes\": \"0ms\""), "{text}");
    }
}
