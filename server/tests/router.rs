//! In-process tests of the HTTP router: the real `adledger::app` over a real local
//! backend in a temporary directory, driven with `tower::ServiceExt::oneshot` — no
//! socket, no process. One test binary (linking the server once) with a module per area:
//!
//! - `api`: an ad's life and every error status of `docs/HTTP.md`;
//! - `body_fuzz`: property tests: arbitrary bodies never get a 5xx;
//! - `feed`: the event stream's bounds (a slow client, shutdown);
//! - `ledger`: the verification routes (digest, consistency and inclusion proofs).
//!
//! The black-box suites that start the real binary live in the workspace's `tests/`
//! member (`adledger-tests`).

#[path = "router/api.rs"]
mod api;
#[path = "router/body_fuzz.rs"]
mod body_fuzz;
#[path = "router/feed.rs"]
mod feed;
#[path = "router/ledger.rs"]
mod ledger;
