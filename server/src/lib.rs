//! The adledger server: the HTTP API of docs/HTTP.md over the engine, the command line
//! and the configuration.
//!
//! # Layout
//!
//! Dependencies point one way, down this list (no module imports one above it in a
//! circle; `scripts/module-cycles.py server/src` checks).
//!
//! - [`cli`]: the clap command line, one subcommand per command.
//! - Commands, thin front ends that parse, call the engine and print:
//!   [`serve`] (open, bind, announce, serve, drain on SIGINT/SIGTERM);
//!   [`verify_cmd`] (`adledger verify`, full verification of a stopped journal);
//!   [`proof_cmd`] (`adledger proof verify`, an auditor's offline check of a proof
//!   bundle); on a stopped ledger [`rebuild_cmd`] (with its [`rebuild_cmd::RebuildMarker`]),
//!   [`replay_cmd`], [`snapshot_cmd`], [`export_cmd`], [`import_cmd`], [`compact_cmd`], which share
//!   [`cmd_output`] (`--json`, progress bars, errors and exit codes); [`aws_cmd`]
//!   (`adledger aws init`).
//! - HTTP: [`app`](mod@app), the router and its middleware (request id, tracing, load shedding,
//!   timeouts, body limit, problem JSON for 404/405); [`edge`], the accept loop and the
//!   connection and request limits (`[http]`); [`routes`], one module per resource (`/admin/*` in
//!   [`routes::admin`]); [`state`], what every handler shares. Request plumbing shared
//!   by the routes: [`body`] (JSON bodies: 415/413/400), [`headers`] (`If-Match`,
//!   `Idempotency-Key`, ETags), [`params`] (query parameters: 400 naming the
//!   parameter), [`views`] (the response JSON), [`error`] (RFC 9457 problems and the
//!   engine-error → status mapping), [`wire_schema`] (the wire format described for
//!   [`openapi`]).
//! - [`backend`]: the one place storage is opened, the one `match` that turns a
//!   [`config::Config`] into the engine's ports.
//! - [`config`]: the storage flags every subcommand shares
//!   ([`config::StorageArgs`]), `serve`'s settings ([`config::ServeArgs`]), and the one
//!   loader: flags > env > TOML file > defaults.
//! - [`snapshot_schedule`]: the snapshots the server takes by itself (its schedule types
//!   are configuration values); [`snapshot_store`]: the snapshot directory, the one
//!   place snapshots are named, listed, taken and deleted (for `adledger snapshot`,
//!   `/admin/snapshots` and the schedule).

// The doc comments of clap arguments are also the command line's `--help` text, written
// for a terminal: `<prefix>journal` and bare URLs are meant literally there.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

pub mod app;
pub mod auth;
pub mod aws_cmd;
pub mod backend;
pub mod body;
pub mod cli;
pub mod cmd_output;
pub mod compact_cmd;
pub mod config;
pub mod delivery;
#[cfg(test)]
mod delivery_faults;
pub mod delivery_lease;
pub mod dev_token_cmd;
pub mod edge;
pub mod error;
pub mod eventbridge;
pub mod export_cmd;
pub mod feed_cmd;
pub mod feed_config;
pub mod feed_pages;
pub mod feed_tail;
pub mod head_deadline;
pub mod headers;
pub mod import_cmd;
pub mod json_array;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod proof_cmd;
pub mod readiness;
pub mod rebuild_cmd;
pub mod replay_cmd;
pub mod routes;
pub mod secret;
pub mod serve;
pub mod snapshot_cmd;
pub mod snapshot_schedule;
pub mod snapshot_store;
pub mod state;
pub mod verify_cmd;
pub mod views;
pub mod webhook;
pub mod wire_schema;

pub use app::app;
pub use state::AppState;
