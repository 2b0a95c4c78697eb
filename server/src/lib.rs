//! The adledger server: the HTTP API of docs/HTTP.md over the engine, the command line
//! and the configuration.
//!
//! # Layout
//!
//! - [`cli`]: the clap command line; [`config`]: flags > env > TOML file > defaults,
//!   resolved into one [`config::Config`]; [`backend`]: the one `match` that turns a
//!   config into the engine's ports.
//! - [`serve`]: open, bind, announce, serve, drain on SIGINT/SIGTERM;
//!   [`snapshot_schedule`]: the snapshots the server takes by itself.
//! - [`verify_cmd`]: `adledger verify`, full verification of a stopped data directory;
//!   [`proof_cmd`]: `adledger proof verify`, an auditor's offline check of a proof bundle.
//! - [`maintenance_cmd`]: `adledger rebuild | replay | snapshot | export | import` on a
//!   stopped data directory.
//! - [`app`]: the router and its middleware (request id, tracing, body limit, problem
//!   JSON for 404/405); [`routes`]: one module per resource.
//! - Request plumbing shared by the routes: [`body`] (JSON bodies: 415/413/400),
//!   [`headers`] (`If-Match`, `Idempotency-Key`, ETags), [`params`] (query parameters:
//!   400 naming the parameter), [`views`] (the response JSON), [`error`] (RFC 9457
//!   problems and the engine-error → status mapping).

pub mod app;
pub mod aws_init;
pub mod backend;
pub mod body;
pub mod cli;
pub mod config;
pub mod error;
pub mod headers;
pub mod maintenance_cmd;
pub mod params;
pub mod proof_cmd;
pub mod routes;
pub mod serve;
pub mod snapshot_schedule;
pub mod verify_cmd;
pub mod views;

pub use app::{AppState, app};
