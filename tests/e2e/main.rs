//! Black-box tests of the `adledger` binary: each starts the real binary (`adledger
//! serve` on a loopback port, or another subcommand to completion) and speaks HTTP and
//! the CLI to it as a user, an operator or an auditor would, written from `docs/HTTP.md`
//! and the CLI's help, never from the implementation.
//!
//! One test binary with a module per suite. Suites that hold for every backend run from
//! the same code once per backend, as `<suite>::local::<test>`, `<suite>::aws::<test>`
//! and `<suite>::memory::<test>` (the AWS variants on DynamoDB Local, named by
//! `ADLEDGER_TEST_DYNAMODB_ENDPOINT`; run `scripts/dynamodb-local.sh cargo test -p
//! adledger-tests`; the memory variants only where no server is restarted). Suites about one backend
//! run once, as `<suite>::local::<test>` or `<suite>::aws::<test>`, and say why in their
//! module doc, so `cargo test -p adledger-tests -- ::local::` runs every test that needs
//! no DynamoDB. `moves` (between the two backends) needs both. `eventbridge::moto::*` needs
//! moto's server (`ADLEDGER_TEST_MOTO_ENDPOINT`, set by `scripts/moto-server.sh`).
//!
//! | suite | local | AWS | memory |
//! |---|---|---|---|
//! | `auth` (hs256 tokens, per-publisher writes, the actor in the journal) | ✓ | ✓ | ✓ |
//! | `auth_modes` (start-up refusal, reads gate, dev-token), `auth_jwks` (a JWKS on loopback) | ✓ | | |
//! | `seed_flows`, `bad_input`, `concurrency`, `deterministic`, `feed` | ✓ | ✓ | ✓ |
//! | `crash` (kill -9, restart, check what survived) | ✓ | ✓ | |
//! | `maintenance`, `verify` (sled and tantivy files touched directly) | ✓ | | |
//! | `damaged_files` (files cut short, garbled or foreign at startup; on AWS a journal behind its index) | ✓ | ✓ | |
//! | `full_disk` (a tmpfs filled up while serving, then freed; needs root) | ✓ | | |
//! | `maintenance_kill` (import, restore, swap killed at random moments) | ✓ | | |
//! | `compact` (the journal rewritten compressed; refused in use or damaged; killed at random moments) | ✓ | | |
//! | `bounded_reads` (history pages, `asOf` and write answers in bounded block reads) | ✓ | | ✓ |
//! | `subscriptions` (durable webhook delivery; on AWS also two servers, one deliverer by lease) | ✓ | ✓ | |
//! | `subscriptions_crash` (webhook delivery of a large journal killed with kill -9 at random moments) | ✓ | | |
//! | `secret_rotation` (a webhook's secret rotated with a grace period) | ✓ | | |
//! | `eventbridge` (bad EventBridge sinks; against moto, as `eventbridge::moto::*`: delivery through a bus, a rule and an SQS queue) | ✓ | | |
//! | `edge` (timeouts, limits, shedding, shutdown: the same on every backend) | ✓ | | |
//! | `openapi` (the document against the routes served), `metrics` | ✓ | | |
//! | `power_loss` (a FUSE filesystem that forgets what was not synced), `power_maintenance` (import and swap cut short on it) | ✓ | | |
//! | `aws_two_servers`, `aws_faults` (a proxy injecting DynamoDB faults), `aws_health`, `opensearch` | | ✓ | |
//! | `moves` (local → AWS → local) | ✓ | ✓ | |
//!
//! The binary is `target/<profile>/adledger`, next to this test executable, or the one
//! `ADLEDGER_BIN` names; `cargo test --workspace` builds it, `cargo test -p
//! adledger-tests` alone needs `cargo build -p adledger` first (see `support::binary`).

mod auth;
mod auth_jwks;
mod auth_modes;
mod aws_faults;
mod aws_health;
mod aws_two_servers;
mod bad_input;
mod bounded_reads;
mod compact;
mod concurrency;
mod crash;
mod damaged_files;
mod deterministic;
mod edge;
mod eventbridge;
mod feed;
mod full_disk;
mod maintenance;
mod maintenance_kill;
mod metrics;
mod moves;
mod openapi;
mod opensearch;
mod power_loss;
mod power_maintenance;
mod search_hits;
mod secret_rotation;
mod seed_flows;
mod subscriptions;
mod subscriptions_crash;
mod support;
mod verify;
