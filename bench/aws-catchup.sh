#!/usr/bin/env bash
# Catch-up of the AWS backend's state projection after a burst of creates (issue 14):
# the bench on fresh DynamoDB Local tables, once with --settle (its note is the time the
# state checkpoint took to reach the journal after the creates; the gets then measure the
# settled read path) and once without (the gets start right after the burst and wait for
# the projection). Run it next to DynamoDB Local, after a release build:
#
#   cargo build --release -p adledger -p adledger-bench
#   scripts/dynamodb-local.sh bench/aws-catchup.sh
#
# Environment: CREATES (default 3000), GETS (default CREATES), SEARCHES (default 300),
# CLIENTS (the bench's concurrent clients; default the bench's 64),
# BIN (the directory holding adledger and adledger-bench; default target/release),
# DELAY_MS (default 0: when set, every DynamoDB request and response goes through
# bench/latency-proxy.py, which delays each by DELAY_MS, e.g. 4 for a region's round trip).
set -euo pipefail
cd "$(dirname "$0")/.."
E="$ADLEDGER_TEST_DYNAMODB_ENDPOINT"
if [[ "${DELAY_MS:-0}" != 0 ]]; then
    exec {proxy_out}< <(exec python3 bench/latency-proxy.py 0 "${E#http://}" "$DELAY_MS")
    proxy=$!
    trap 'kill "$proxy" 2>/dev/null || true' EXIT
    read -r -t 10 line <&"$proxy_out"
    E="http://127.0.0.1:${line#listening on }"
    echo "== DynamoDB through bench/latency-proxy.py: +$DELAY_MS ms each way ($E)"
fi
BIN="${BIN:-$PWD/target/release}"
B="$BIN/adledger"
BENCH="$BIN/adledger-bench"
CREATES="${CREATES:-3000}"
PARAMS=(--creates "$CREATES" --gets "${GETS:-$CREATES}" --searches "${SEARCHES:-300}" ${CLIENTS:+--clients "$CLIENTS"})
work=$(mktemp -d /tmp/adledger-catchup.XXXXXX)
# aws_server STEM: a server binary for the bench that runs the AWS backend on fresh tables.
source bench/aws-server.sh
for settle in "--settle" ""; do
    server=$(aws_server catchup)
    echo "== aws backend (DynamoDB Local) ${settle:-no settle}; load $(cat /proc/loadavg)"
    RUST_LOG=warn "$BENCH" --server-bin "$server" $settle "${PARAMS[@]}" 2>&1 | grep -v '^adledger listening'
done
rm -rf "$work"
