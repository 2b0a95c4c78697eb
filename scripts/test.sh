#!/usr/bin/env bash
# Runs every check and every test of the project: formatting, lints, unit tests, the
# conformance suite on the local backend, and the end-to-end tests against the real
# binary. This is the README's test command; .ci/run calls exactly this.
#
# Not yet included: the AWS backend's conformance suite (crate adledger-aws). It is
# still being completed (its tamper harness is missing); run it by hand with
#   scripts/dynamodb-local.sh cargo test -p adledger-aws
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo test (workspace, except the AWS backend's suite: see above)"
echo "skipped: adledger-aws conformance suite (AWS backend not finished; see scripts/test.sh)"
cargo test --workspace --exclude adledger-aws --locked
