#!/usr/bin/env bash
# Runs every check and every test of the project: formatting, lints, unit tests, the
# conformance suite on each backend (the AWS backend's against AWS's DynamoDB Local,
# installed and started by scripts/dynamodb-local.sh in a private network namespace),
# the end-to-end tests against the real binary (tests/, on each backend; the EventBridge
# sink's against moto, installed and started by scripts/moto-server.sh inside that
# namespace), and a fuzzing run of the HTTP API from its OpenAPI document
# (scripts/fuzz-api.sh).
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> no import cycles between the modules of any crate"
scripts/module-cycles.py engine/src backends/*/src server/src tests/e2e bench/src

echo "==> cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo doc (broken intra-doc links and bad doc markup are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

echo "==> build every test and the binary (fetches crates; the test run below has no network)"
cargo test --workspace --locked --no-run
# The black-box suites (tests/, adledger-tests) run target/debug/adledger; the workspace
# test build above builds it too (for the server's own tests), this says so explicitly.
cargo build -p adledger --locked
# moto (PyPI) for the EventBridge tests: installed here, the test run has no network.
scripts/moto-server.sh --install

echo "==> cargo test (workspace), next to DynamoDB Local and moto"
scripts/dynamodb-local.sh scripts/moto-server.sh cargo test --workspace --locked --offline

echo "==> fuzz the HTTP API from its OpenAPI document (schemathesis, seeded and bounded)"
ADLEDGER_BIN="${CARGO_TARGET_DIR:-target}/debug/adledger" scripts/fuzz-api.sh
