//! `adledger dev-token`: prints an HS256 token for the configured secret, for development
//! and tests (`--auth hs256`). It reads the secret and issuer exactly as `serve` does
//! (`ADLEDGER_JWT_SECRET` or `--jwt-secret-file`, `--jwt-issuer`, the config file), so a
//! token it prints is one that server accepts.

use std::time::Duration;

use clap::Args;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::auth::AuthMode;
use crate::auth::settings::AuthArgs;
use crate::auth::token::ADMIN_SCOPE;
use crate::config::{Config, StorageArgs};
use crate::edge::DurationSetting;

/// Flags of `adledger dev-token`.
#[derive(Debug, Clone, Args)]
pub struct DevTokenArgs {
    /// The caller's id (`sub`), recorded as the actor of every change it makes
    #[arg(long, value_name = "SUBJECT")]
    pub sub: String,

    /// A publisher whose ads the token may change (repeatable)
    #[arg(long, value_name = "ID")]
    pub publisher: Vec<String>,

    /// Grant admin rights (scope adledger/admin): any publisher, and /admin/*
    #[arg(long)]
    pub admin: bool,

    /// How long the token is valid, such as 30m, 1h or 7d [default: 1h]
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub ttl: DurationSetting,

    /// Where the configuration is (only --config is used).
    #[command(flatten)]
    pub storage: StorageArgs,

    /// The secret and the issuer.
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// Why no token was printed.
#[derive(Debug, thiserror::Error)]
pub enum DevTokenError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// No usable secret, or a bad flag value.
    #[error("{0}")]
    Settings(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iss: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    publishers: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Runs the command: prints the token and a newline on stdout.
pub fn dev_token_command(args: &DevTokenArgs) -> Result<(), DevTokenError> {
    let token = dev_token(args)?;
    println!("{token}");
    Ok(())
}

/// The token `args` describe.
pub fn dev_token(args: &DevTokenArgs) -> Result<String, DevTokenError> {
    let mut layer = args.storage.overrides();
    layer.auth = args.auth.overrides();
    let config = Config::load(&layer)?;
    if let Some(mode) = config.auth.mode.filter(|m| *m != AuthMode::Hs256) {
        return Err(DevTokenError::Settings(format!(
            "dev-token signs hs256 tokens, and the configuration says --auth {}",
            mode.as_str()
        )));
    }
    let settings = |e: crate::auth::AuthSetupError| DevTokenError::Settings(e.0);
    let secret = config.auth.hs256_secret().map_err(settings)?;
    let issuer = config.auth.issuer_for(AuthMode::Hs256).map_err(settings)?;
    adledger_engine::Actor::new(args.sub.as_str(), issuer.as_str())
        .map_err(|e| DevTokenError::Settings(format!("--sub: {e}")))?;
    let ttl: Duration = args.ttl.get();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: &args.sub,
        iss: &issuer,
        iat: now,
        nbf: now,
        exp: now.saturating_add(ttl.as_secs()),
        publishers: &args.publisher,
        scope: args.admin.then_some(ADMIN_SCOPE),
        aud: config.auth.audience.first().map(String::as_str),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .map_err(|e| DevTokenError::Settings(format!("cannot sign the token: {e}")))
}
