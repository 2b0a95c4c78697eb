//! The AWS backend's flags (shared by `serve` and `aws init`) and `adledger aws init
//! [--dry-run]`, which creates the DynamoDB tables with on-demand capacity and, with
//! `--search opensearch`, the OpenSearch index with its mapping. Running it twice is
//! harmless: an existing table with the right keys, or an existing index, is left as it
//! is.
//!
//! Region and credentials come from the standard AWS chain; for DynamoDB Local any static
//! credentials work: `AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
//! AWS_REGION=us-east-1 adledger aws init --dynamodb-endpoint http://127.0.0.1:8000`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::{Config, OpenSearchAuthKind, Overrides, SearchKind};

/// Flags of the AWS backend.
#[derive(Debug, Clone, Default, Args)]
pub struct AwsFlags {
    /// AWS backend: DynamoDB endpoint URL, e.g. http://127.0.0.1:8000 for DynamoDB Local
    /// [env: ADLEDGER_DYNAMODB_ENDPOINT] [default: AWS's endpoint for the region]
    #[arg(long, value_name = "URL", global = true)]
    pub dynamodb_endpoint: Option<String>,

    /// AWS backend: prefix of the table names (<prefix>journal, <prefix>state)
    /// [env: ADLEDGER_TABLE_PREFIX] [default: adledger-]
    #[arg(long, value_name = "PREFIX", global = true)]
    pub table_prefix: Option<String>,

    /// AWS backend: search index [env: ADLEDGER_SEARCH] [default: tantivy]
    #[arg(long, value_enum, value_name = "SEARCH", global = true)]
    pub search: Option<SearchKind>,

    /// With --search opensearch: the cluster's URL; the index is <prefix>ads
    /// [env: ADLEDGER_OPENSEARCH_URL]
    #[arg(long, value_name = "URL", global = true)]
    pub opensearch_url: Option<String>,

    /// With --search opensearch: authentication; basic reads ADLEDGER_OPENSEARCH_USERNAME
    /// and ADLEDGER_OPENSEARCH_PASSWORD [env: ADLEDGER_OPENSEARCH_AUTH] [default: basic
    /// if a username is set, else none]
    #[arg(long, value_enum, value_name = "AUTH", global = true)]
    pub opensearch_auth: Option<OpenSearchAuthKind>,
}

impl AwsFlags {
    /// The settings these flags name, as (part of) the top configuration layer.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            dynamodb_endpoint: self.dynamodb_endpoint.clone(),
            table_prefix: self.table_prefix.clone(),
            search: self.search,
            opensearch_url: self.opensearch_url.clone(),
            opensearch_auth: self.opensearch_auth,
            ..Overrides::default()
        }
    }
}

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
    /// TOML config file [env: ADLEDGER_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The AWS settings.
    #[command(flatten)]
    pub aws: AwsFlags,

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
    let env = Overrides::from_env(|name| match std::env::var(name) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(raw)) => Some(raw.to_string_lossy().into_owned()),
    })
    .map_err(|e| e.to_string())?;
    let flags = Overrides {
        config: args.config.clone(),
        ..args.aws.overrides()
    };
    Config::load(&env, &flags).map_err(|e| e.to_string())
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

/// The OpenSearch settings `config` names: the URL (required), the index
/// `<table_prefix>ads`, and the authentication (basic needs a username and a password).
#[cfg(feature = "aws")]
pub fn opensearch_settings(config: &Config) -> Result<adledger_aws::OpenSearchSettings, String> {
    use adledger_aws::{OpenSearchAuth, OpenSearchSettings};

    let url = config.opensearch_url.clone().ok_or_else(|| {
        "search `opensearch` needs the cluster's URL: --opensearch-url URL, \
         ADLEDGER_OPENSEARCH_URL or `opensearch_url` in the config file"
            .to_string()
    })?;
    let index =
        adledger_aws::opensearch::index_name(&config.table_prefix).map_err(|e| e.to_string())?;
    let kind = config
        .opensearch_auth
        .unwrap_or(if config.opensearch_username.is_some() {
            OpenSearchAuthKind::Basic
        } else {
            OpenSearchAuthKind::None
        });
    let auth = match kind {
        OpenSearchAuthKind::None => OpenSearchAuth::None,
        OpenSearchAuthKind::Basic => {
            let (Some(username), Some(password)) =
                (&config.opensearch_username, &config.opensearch_password)
            else {
                return Err("OpenSearch basic authentication needs \
                            ADLEDGER_OPENSEARCH_USERNAME (or `opensearch_username`) and \
                            ADLEDGER_OPENSEARCH_PASSWORD"
                    .to_string());
            };
            OpenSearchAuth::Basic {
                username: username.clone(),
                password: password.expose().to_string(),
            }
        }
        OpenSearchAuthKind::Sigv4 | OpenSearchAuthKind::Sigv4Serverless => OpenSearchAuth::SigV4 {
            service: if kind == OpenSearchAuthKind::Sigv4 {
                "es"
            } else {
                "aoss"
            }
            .to_string(),
            region: None,
        },
    };
    Ok(OpenSearchSettings { url, index, auth })
}

#[cfg(feature = "aws")]
fn init_command(args: &InitArgs, out: &mut dyn Write) -> Result<(), String> {
    use adledger_aws::tables::{self, Created};
    use adledger_aws::{DynamoSettings, TableNames};

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
    let settings = DynamoSettings {
        endpoint: config.dynamodb_endpoint.clone(),
        region: None,
    };
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
            config: None,
            aws: AwsFlags {
                // Nothing listens here; a dry run must not try.
                dynamodb_endpoint: Some("http://127.0.0.1:9".into()),
                table_prefix: Some("dry-".into()),
                ..AwsFlags::default()
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
            config: None,
            aws: AwsFlags {
                dynamodb_endpoint: Some("http://127.0.0.1:9".into()),
                table_prefix: Some("dry-".into()),
                search: Some(SearchKind::Opensearch),
                // Nothing listens here either.
                opensearch_url: Some("http://127.0.0.1:9".into()),
                opensearch_auth: Some(OpenSearchAuthKind::None),
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

    #[cfg(feature = "aws")]
    #[test]
    fn opensearch_needs_a_url_and_basic_auth_needs_both_secrets() {
        let config = Config {
            search: SearchKind::Opensearch,
            ..Config::default()
        };
        let err = opensearch_settings(&config).expect_err("no url");
        assert!(err.contains("--opensearch-url"), "{err}");
        let config = Config {
            opensearch_url: Some("http://127.0.0.1:9200".into()),
            opensearch_username: Some("admin".into()),
            ..config
        };
        let err = opensearch_settings(&config).expect_err("no password");
        assert!(err.contains("ADLEDGER_OPENSEARCH_PASSWORD"), "{err}");
        let config = Config {
            opensearch_password: Some(crate::config::Secret::new("pw")),
            ..config
        };
        let settings = opensearch_settings(&config).expect("basic");
        assert_eq!(settings.index, "adledger-ads");
        assert!(matches!(
            settings.auth,
            adledger_aws::OpenSearchAuth::Basic { ref username, .. } if username == "admin"
        ));
    }
}
