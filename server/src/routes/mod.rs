//! The HTTP routes of docs/HTTP.md, one module per resource.

pub mod admin;
pub mod ads;
pub mod feed;
pub mod feed_stream;
pub mod health;
pub mod ledger;
pub mod metrics;
pub mod search;
pub mod spliced;
pub mod subscription_sinks;
pub mod subscriptions;
