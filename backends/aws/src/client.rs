//! Building the DynamoDB client.
//!
//! The SDK crates are compiled without their default HTTP client (it links aws-lc-sys, a
//! large C library). This module supplies the client instead: hyper 1 with rustls over
//! *ring*, which speaks both `http://` (DynamoDB Local, moto) and `https://` (AWS), with
//! the system's root certificates.
//!
//! Every client counts its requests ([`crate::metrics`]).

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::{Credentials, Region, SharedHttpClient};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::capacity::ConsumedCapacity;
use crate::metrics::CountRequests;

/// Where DynamoDB is and how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamoSettings {
    /// An endpoint URL overriding AWS's (for DynamoDB Local: `http://127.0.0.1:8000`).
    pub endpoint: Option<String>,
    /// The region; `None` takes it from the standard AWS chain (`AWS_REGION`, profile).
    pub region: Option<String>,
}

/// The HTTP client every AWS client of this backend uses.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// A DynamoDB client with region and credentials from the standard AWS chain
/// (environment, shared config and credentials files, web identity, container and
/// instance metadata), and the endpoint from `settings` if set.
///
/// Nothing is sent until the first request; credentials are resolved then.
pub async fn connect(settings: &DynamoSettings) -> aws_sdk_dynamodb::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_dynamodb::config::Builder::from(&shared);
    if let Some(endpoint) = &settings.endpoint {
        config = config.endpoint_url(endpoint);
    }
    config = config
        .interceptor(CountRequests)
        .interceptor(ConsumedCapacity);
    aws_sdk_dynamodb::Client::from_conf(config.build())
}

/// A DynamoDB client with fixed credentials and region and no lookup of any kind: for
/// DynamoDB Local and other emulators, which accept any credentials.
pub fn connect_static(endpoint: &str, region: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "adledger-static",
        ))
        .endpoint_url(endpoint)
        .http_client(http_client())
        .interceptor(CountRequests)
        .interceptor(ConsumedCapacity)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}
