//! Where OpenSearch is and how to authenticate: settings, and building the client.
//!
//! The `opensearch` crate is compiled without its TLS features; its HTTP client (reqwest
//! 0.13) gets rustls without a bundled crypto provider, and [`client`] installs *ring*,
//! the provider the DynamoDB client already uses, so `https://` works without building
//! aws-lc-sys. Authentication is none, HTTP basic (self-managed clusters, the security
//! plugin's internal users), or AWS SigV4 with credentials and region from the standard
//! AWS chain (Amazon OpenSearch Service: service `es`; Serverless: `aoss`).

use std::time::Duration;

use aws_config::BehaviorVersion;
use opensearch::OpenSearch;
use opensearch::auth::Credentials;
use opensearch::http::Url;
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};

use super::error::OpenSearchError;

/// How long one request may take, connection included, before it fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The index name under the default table prefix.
pub const DEFAULT_INDEX_SUFFIX: &str = "ads";

/// Where the search index lives and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenSearchSettings {
    /// The cluster's URL, e.g. `https://search-x.eu-west-1.es.amazonaws.com` or
    /// `http://127.0.0.1:9200`.
    pub url: String,
    /// The index name (see [`index_name`]).
    pub index: String,
    /// How to authenticate.
    pub auth: OpenSearchAuth,
}

/// How to authenticate to OpenSearch.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum OpenSearchAuth {
    /// No credentials (a local cluster without the security plugin).
    #[default]
    None,
    /// HTTP basic authentication. The password never appears in `Debug` output.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// AWS SigV4 request signing with the standard AWS credential chain.
    SigV4 {
        /// `es` for Amazon OpenSearch Service, `aoss` for OpenSearch Serverless.
        service: String,
        /// The region; `None` takes it from the standard chain (`AWS_REGION`, profile).
        region: Option<String>,
    },
}

impl std::fmt::Debug for OpenSearchAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenSearchAuth::None => f.write_str("None"),
            OpenSearchAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<hidden>")
                .finish(),
            OpenSearchAuth::SigV4 { service, region } => f
                .debug_struct("SigV4")
                .field("service", service)
                .field("region", region)
                .finish(),
        }
    }
}

impl std::fmt::Debug for OpenSearchSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSearchSettings")
            .field("url", &self.url)
            .field("index", &self.index)
            .field("auth", &self.auth)
            .finish()
    }
}

/// The index of a ledger whose tables have `prefix`: `<prefix>ads` (`adledger-ads` by
/// default), so several ledgers can share a cluster as they share a DynamoDB account.
///
/// Fails, naming the rule, when the name is not a valid OpenSearch index name (lower
/// case only; no `\ / * ? " < > | , #` or spaces; not starting with `_`, `-` or `+`; at
/// most 255 bytes).
pub fn index_name(prefix: &str) -> Result<String, adledger_engine::Error> {
    let name = format!("{prefix}{DEFAULT_INDEX_SUFFIX}");
    check_index_name(&name)?;
    Ok(name)
}

pub(crate) fn check_index_name(name: &str) -> Result<(), OpenSearchError> {
    let forbidden = |c: char| c.is_uppercase() || "\\/*?\"<>|, #:".contains(c);
    if name.is_empty()
        || name.len() > 255
        || name.starts_with(['_', '-', '+'])
        || name == "."
        || name == ".."
        || name.chars().any(forbidden)
    {
        return Err(OpenSearchError::Settings(format!(
            "{name:?} is not a valid OpenSearch index name (the table prefix followed by \
             `ads`): use lower-case letters, digits, `-`, `_` and `.`, not starting with \
             `_`, `-` or `+`, at most 255 bytes"
        )));
    }
    Ok(())
}

/// A client for `settings`. Nothing is sent; SigV4 credentials are looked up now (the
/// chain may read files or instance metadata) and refreshed by the provider as needed.
pub(crate) async fn client(settings: &OpenSearchSettings) -> Result<OpenSearch, OpenSearchError> {
    // Fails only when a provider is already installed (by an earlier call, or by the
    // application), which is what is wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = Url::parse(&settings.url).map_err(|e| {
        OpenSearchError::Settings(format!("OpenSearch URL {:?}: {e}", settings.url))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OpenSearchError::Settings(format!(
            "OpenSearch URL {:?} must start with http:// or https://",
            settings.url
        )));
    }
    let mut builder =
        TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(REQUEST_TIMEOUT);
    match &settings.auth {
        OpenSearchAuth::None => {}
        OpenSearchAuth::Basic { username, password } => {
            builder = builder.auth(Credentials::Basic(username.clone(), password.clone()));
        }
        OpenSearchAuth::SigV4 { service, region } => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .http_client(crate::client::http_client());
            if let Some(region) = region {
                loader = loader.region(aws_sdk_dynamodb::config::Region::new(region.clone()));
            }
            let shared = loader.load().await;
            let credentials = Credentials::try_from(&shared).map_err(|e| {
                OpenSearchError::Settings(format!(
                    "SigV4 needs AWS credentials and a region from the standard chain \
                     (AWS_REGION, AWS_ACCESS_KEY_ID, profile, instance role): {e}"
                ))
            })?;
            builder = builder.auth(credentials).service_name(service);
        }
    }
    let transport = builder
        .build()
        .map_err(|e| OpenSearchError::Settings(format!("cannot build the HTTP client: {e}")))?;
    Ok(OpenSearch::new(transport))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_follow_opensearch_rules() {
        assert_eq!(index_name("adledger-").expect("valid"), "adledger-ads");
        assert_eq!(index_name("").expect("valid"), "ads");
        assert!(index_name("Prod-").is_err(), "upper case");
        assert!(index_name("_x").is_err(), "leading underscore");
        assert!(index_name("a b").is_err(), "space");
    }

    #[test]
    fn debug_hides_the_password() {
        let auth = OpenSearchAuth::Basic {
            username: "admin".into(),
            password: "s3cret".into(),
        };
        let text = format!("{auth:?}");
        assert!(text.contains("admin") && !text.contains("s3cret"), "{text}");
    }
}
