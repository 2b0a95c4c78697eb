//! The `[auth]` settings, their flags, and the rule that a production configuration
//! cannot start open by accident.
//!
//! | setting | flag / variable | TOML (`[auth]`) |
//! |---|---|---|
//! | mode: `none`, `hs256`, `jwks` | `--auth` / `ADLEDGER_AUTH` | `mode` |
//! | the HS256 secret (≥ 32 bytes) | `ADLEDGER_JWT_SECRET` only, or `--jwt-secret-file` / `ADLEDGER_JWT_SECRET_FILE` | `jwt_secret_file` |
//! | the issuer tokens must name (`iss`) | `--jwt-issuer` / `ADLEDGER_JWT_ISSUER` | `issuer` |
//! | where the JWKS is | `--jwks-url` / `ADLEDGER_JWKS_URL` | `jwks_url` |
//! | accepted audiences (`aud` or Cognito's `client_id`) | `--jwt-audience` (repeatable) / `ADLEDGER_JWT_AUDIENCE` (comma-separated) | `audience = [...]` |
//! | who may read | `--auth-reads` / `ADLEDGER_AUTH_READS` | `reads` |
//!
//! The secret itself never comes from a flag (it would show in `ps`) nor from the file
//! (config files get committed); it is never logged and `Debug` hides it.
//!
//! Unset, the mode is `none` only where that cannot expose anything: the local or memory
//! backend listening on a loopback address. Anything else (the AWS backend, or a
//! non-loopback `--listen`) must say `--auth`, and an explicit `--auth none` there is
//! allowed but warned about at every start ([`AuthSettings::choose_mode`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use crate::secret::Secret;

/// How callers are identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No identity: every caller may write, and the journal records no actor.
    None,
    /// Tokens signed with a shared secret (HS256): development, tests, small setups.
    Hs256,
    /// Tokens signed by an identity provider whose public keys are published as a JWKS
    /// (RS256 or ES256): Amazon Cognito, Auth0, Keycloak, …
    Jwks,
}

impl AuthMode {
    /// The name used in flags, variables and files.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Hs256 => "hs256",
            AuthMode::Jwks => "jwks",
        }
    }
}

/// Who may read (get, list, history, search, proofs, digests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReadAccess {
    /// Anyone: ads are public.
    #[default]
    Public,
    /// Any caller with a valid token.
    Authenticated,
}

/// The issuer of `hs256` tokens when none is configured (what `adledger dev-token`
/// writes into `iss`).
pub const DEFAULT_HS256_ISSUER: &str = "adledger";

/// The shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// The `[auth]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The mode; `None` when nothing chose one (see [`AuthSettings::choose_mode`]).
    pub mode: Option<AuthMode>,
    /// The `iss` tokens must carry: required for `jwks`; `adledger` for `hs256`.
    pub issuer: Option<String>,
    /// `jwks`: where the keys are; `{issuer}/.well-known/jwks.json` when unset.
    pub jwks_url: Option<String>,
    /// Accepted audiences; empty accepts any (or none).
    pub audience: Vec<String>,
    /// Who may read.
    pub reads: ReadAccess,
    /// `hs256`: a file holding the secret (a trailing newline is ignored).
    pub jwt_secret_file: Option<PathBuf>,
    /// `hs256`: the secret, from `ADLEDGER_JWT_SECRET` only.
    #[serde(skip)]
    pub jwt_secret: Option<Secret>,
}

/// A configuration that must not start, with the sentence saying how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthSetupError(pub String);

/// What [`AuthSettings::choose_mode`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeChoice {
    /// The mode to run.
    pub mode: AuthMode,
    /// `none` chosen explicitly where it exposes writes to the network or to AWS: the
    /// server logs a warning at every start.
    pub warn_open: bool,
}

impl AuthSettings {
    /// The mode to run listening on `listen`, on the AWS backend when `aws` (shared,
    /// production storage), or why it must not start.
    pub fn choose_mode(&self, aws: bool, listen: &str) -> Result<ModeChoice, AuthSetupError> {
        let exposed = aws || !is_loopback(listen);
        match (self.mode, exposed) {
            (None, false) => Ok(ModeChoice {
                mode: AuthMode::None,
                warn_open: false,
            }),
            (None, true) => {
                let why = if aws {
                    "the AWS backend".to_string()
                } else {
                    format!("--listen {listen} (not a loopback address)")
                };
                Err(AuthSetupError(format!(
                    "refusing to start without authentication on {why}: choose one with \
                     --auth jwks (with --jwt-issuer), --auth hs256 (with ADLEDGER_JWT_SECRET \
                     or --jwt-secret-file), or --auth none to run open deliberately \
                     (also ADLEDGER_AUTH, or `mode` in the [auth] table of the config file)"
                )))
            }
            (Some(mode), _) => Ok(ModeChoice {
                mode,
                warn_open: mode == AuthMode::None && exposed,
            }),
        }
    }

    /// The issuer tokens must name in `mode`, or why there is none.
    pub fn issuer_for(&self, mode: AuthMode) -> Result<String, AuthSetupError> {
        match (&self.issuer, mode) {
            (Some(issuer), _) if !issuer.trim().is_empty() => Ok(issuer.clone()),
            (_, AuthMode::Jwks) => Err(AuthSetupError(
                "--auth jwks needs the token issuer: --jwt-issuer URL (for Cognito \
                 https://cognito-idp.REGION.amazonaws.com/POOL_ID), ADLEDGER_JWT_ISSUER, or \
                 `issuer` in [auth]"
                    .into(),
            )),
            _ => Ok(DEFAULT_HS256_ISSUER.to_string()),
        }
    }

    /// The JWKS URL: configured, or the issuer's well-known one.
    pub fn jwks_url_for(&self, issuer: &str) -> Result<String, AuthSetupError> {
        let url = match &self.jwks_url {
            Some(url) if !url.trim().is_empty() => url.clone(),
            _ => format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(AuthSetupError(format!(
                "the JWKS URL {url:?} must start with https:// (or http:// for a test \
                 server); set it with --jwks-url"
            )));
        }
        Ok(url)
    }

    /// The HS256 secret: from `ADLEDGER_JWT_SECRET` or the secret file (not both), at
    /// least [`MIN_SECRET_BYTES`] long.
    pub fn hs256_secret(&self) -> Result<Secret, AuthSetupError> {
        let secret = match (&self.jwt_secret, &self.jwt_secret_file) {
            (Some(_), Some(_)) => {
                return Err(AuthSetupError(
                    "both ADLEDGER_JWT_SECRET and a JWT secret file are set; keep one".into(),
                ));
            }
            (Some(secret), None) => secret.clone(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    AuthSetupError(format!(
                        "cannot read the JWT secret file {}: {e}",
                        path.display()
                    ))
                })?;
                Secret::new(text.trim_end_matches(['\r', '\n']))
            }
            (None, None) => {
                return Err(AuthSetupError(
                    "--auth hs256 needs a secret: set ADLEDGER_JWT_SECRET, or \
                     --jwt-secret-file FILE (`jwt_secret_file` in [auth])"
                        .into(),
                ));
            }
        };
        if secret.expose().len() < MIN_SECRET_BYTES {
            return Err(AuthSetupError(format!(
                "the JWT secret is {} bytes long; use at least {MIN_SECRET_BYTES} random bytes \
                 (for example `openssl rand -base64 48`)",
                secret.expose().len()
            )));
        }
        Ok(secret)
    }
}

/// Whether `listen` (`host:port`) is a loopback address: an IP in 127.0.0.0/8 or `::1`,
/// or the name `localhost`. Any other name counts as exposed.
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = listen
        .rsplit_once(':')
        .map_or(listen, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The auth flags `serve` and `dev-token` share. `None` (or empty) where the flag and its
/// variable are both absent.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// Caller identity: none (loopback local/memory only by default), hs256 (shared
    /// secret) or jwks (an identity provider such as Cognito) [default: none on loopback
    /// with the local or memory backend; required otherwise]
    #[arg(long = "auth", value_enum, value_name = "MODE", env = "ADLEDGER_AUTH")]
    pub mode: Option<AuthMode>,

    /// hs256: a file holding the shared secret (the secret itself: ADLEDGER_JWT_SECRET)
    #[arg(long, value_name = "FILE", env = "ADLEDGER_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// The issuer tokens must carry in `iss`; for Cognito
    /// https://cognito-idp.REGION.amazonaws.com/POOL_ID [default: adledger with hs256]
    #[arg(long, value_name = "URL", env = "ADLEDGER_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// jwks: where the signing keys are [default: ISSUER/.well-known/jwks.json]
    #[arg(long, value_name = "URL", env = "ADLEDGER_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// An accepted audience: matches `aud`, or Cognito's `client_id` in access tokens
    /// (repeatable; the variable takes a comma-separated list) [default: any]
    #[arg(
        long,
        value_name = "AUDIENCE",
        env = "ADLEDGER_JWT_AUDIENCE",
        value_delimiter = ','
    )]
    pub jwt_audience: Vec<String>,

    /// Who may read: public (anyone) or authenticated (any valid token) [default: public]
    #[arg(long, value_enum, value_name = "WHO", env = "ADLEDGER_AUTH_READS")]
    pub auth_reads: Option<ReadAccess>,
}

/// The auth settings above the file: flags, their variables, and `ADLEDGER_JWT_SECRET`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthOverrides {
    /// `--auth`.
    pub mode: Option<AuthMode>,
    /// `--jwt-secret-file`.
    pub jwt_secret_file: Option<PathBuf>,
    /// `--jwt-issuer`.
    pub issuer: Option<String>,
    /// `--jwks-url`.
    pub jwks_url: Option<String>,
    /// `--jwt-audience` (empty: not given).
    pub audience: Vec<String>,
    /// `--auth-reads`.
    pub reads: Option<ReadAccess>,
    /// `ADLEDGER_JWT_SECRET` (no flag).
    pub jwt_secret: Option<Secret>,
}

impl AuthArgs {
    /// These flags as a configuration layer.
    pub fn overrides(&self) -> AuthOverrides {
        AuthOverrides {
            mode: self.mode,
            jwt_secret_file: self.jwt_secret_file.clone(),
            issuer: self.jwt_issuer.clone(),
            jwks_url: self.jwks_url.clone(),
            audience: self
                .jwt_audience
                .iter()
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect(),
            reads: self.auth_reads,
            jwt_secret: None,
        }
    }
}

impl AuthOverrides {
    /// Replaces each setting of `auth` this layer names.
    pub fn apply_to(&self, auth: &mut AuthSettings) {
        if let Some(mode) = self.mode {
            auth.mode = Some(mode);
        }
        if let Some(path) = &self.jwt_secret_file {
            auth.jwt_secret_file = Some(path.clone());
        }
        if let Some(issuer) = &self.issuer {
            auth.issuer = Some(issuer.clone());
        }
        if let Some(url) = &self.jwks_url {
            auth.jwks_url = Some(url.clone());
        }
        if !self.audience.is_empty() {
            auth.audience.clone_from(&self.audience);
        }
        if let Some(reads) = self.reads {
            auth.reads = reads;
        }
        if let Some(secret) = &self.jwt_secret {
            auth.jwt_secret = Some(secret.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        for open in [
            "127.0.0.1:8080",
            "127.1.2.3:0",
            "[::1]:80",
            "localhost:8080",
        ] {
            assert!(is_loopback(open), "{open}");
        }
        for exposed in ["0.0.0.0:8080", "[::]:80", "10.0.0.5:80", "example.com:80"] {
            assert!(!is_loopback(exposed), "{exposed}");
        }
    }

    #[test]
    fn production_cannot_start_open_by_accident() {
        let unset = AuthSettings::default();
        let open = |aws, listen| unset.choose_mode(aws, listen);
        assert_eq!(
            open(false, "127.0.0.1:8080").expect("loopback local"),
            ModeChoice {
                mode: AuthMode::None,
                warn_open: false
            }
        );
        assert!(open(false, "[::1]:0").is_ok());
        let err = open(true, "127.0.0.1:8080").expect_err("aws");
        assert!(err.0.contains("--auth"), "{err}");
        let err = open(false, "0.0.0.0:8080").expect_err("exposed");
        assert!(
            err.0.contains("--auth") && err.0.contains("0.0.0.0:8080"),
            "{err}"
        );

        let explicit = AuthSettings {
            mode: Some(AuthMode::None),
            ..AuthSettings::default()
        };
        let choice = explicit
            .choose_mode(true, "0.0.0.0:8080")
            .expect("explicit none");
        assert!(choice.warn_open);
    }

    #[test]
    fn secrets_are_long_enough_and_come_from_one_place() {
        let short = AuthSettings {
            jwt_secret: Some(Secret::new("too short")),
            ..AuthSettings::default()
        };
        assert!(short.hs256_secret().expect_err("short").0.contains("32"));
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("secret");
        std::fs::write(&file, format!("{}\n", "s".repeat(40))).expect("write");
        let from_file = AuthSettings {
            jwt_secret_file: Some(file.clone()),
            ..AuthSettings::default()
        };
        assert_eq!(
            from_file.hs256_secret().expect("file").expose(),
            "s".repeat(40)
        );
        let both = AuthSettings {
            jwt_secret: Some(Secret::new("x".repeat(40))),
            jwt_secret_file: Some(file),
            ..AuthSettings::default()
        };
        assert!(both.hs256_secret().is_err());
        assert!(AuthSettings::default().hs256_secret().is_err());
    }

    #[test]
    fn jwks_needs_an_issuer_and_derives_its_url() {
        let settings = AuthSettings::default();
        assert!(settings.issuer_for(AuthMode::Jwks).is_err());
        assert_eq!(
            settings.issuer_for(AuthMode::Hs256).expect("default"),
            DEFAULT_HS256_ISSUER
        );
        assert_eq!(
            settings
                .jwks_url_for("https://cognito-idp.eu-west-1.amazonaws.com/pool/")
                .expect("url"),
            "https://cognito-idp.eu-west-1.amazonaws.com/pool/.well-known/jwks.json"
        );
        let bad = AuthSettings {
            jwks_url: Some("file:///etc/passwd".into()),
            ..AuthSettings::default()
        };
        assert!(bad.jwks_url_for("https://x").is_err());
    }
}
