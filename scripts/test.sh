#!/usr/bin/env bash
# Runs every check and every test of the project: formatting, lints, unit tests, the
# conformance suite on each backend, and the end-to-end tests against the real binary.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo test (workspace)"
cargo test --workspace --locked
