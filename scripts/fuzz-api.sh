#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document: schemathesis generates requests for
# every operation of GET /openapi.json and checks each answer.
#
#   scripts/fuzz-api.sh            (builds target/debug/adledger unless ADLEDGER_BIN is set)
#
# What it does:
#
# 1. Installs schemathesis (a pinned version, from PyPI) once into a virtualenv under the
#    cache directory (idempotent: kept while the pinned version is the one installed).
# 2. Starts the real binary on a free loopback port with a fresh temporary data directory
#    (local backend) and waits for /healthz (bounded).
# 3. Runs schemathesis against it, seeded and bounded (a few minutes at most), with the
#    checks that matter for a documented API: never a 5xx, only documented statuses,
#    documented content types and headers, bodies that match the schemas, 405 for
#    methods a route does not serve, and what a deleted or created resource must do.
# 4. Stops the server when it ends (trap), whatever happened.
#
# Exits non-zero if schemathesis found a failure; its report (JUnit) is written under
# the temporary directory, whose path is printed.
#
# Environment:
#   ADLEDGER_CACHE_DIR        cache root (default: ${XDG_CACHE_HOME:-~/.cache}/adledger)
#   ADLEDGER_BIN              the server binary (default: target/debug/adledger, built here)
#   ADLEDGER_FUZZ_EXAMPLES    examples per operation and phase (default 60)
#   ADLEDGER_FUZZ_SEED        the seed (default 20240501: runs are reproducible)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
CACHE_DIR="${ADLEDGER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/adledger}"
VENV="$CACHE_DIR/venv"
EXAMPLES="${ADLEDGER_FUZZ_EXAMPLES:-60}"
SEED="${ADLEDGER_FUZZ_SEED:-20240501}"

# 1. schemathesis, pinned, in its own virtualenv.
if [[ "$("$VENV/bin/schemathesis" --version 2>/dev/null || true)" != *" $SCHEMATHESIS_VERSION" ]]; then
    echo "==> installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    mkdir -p "$CACHE_DIR"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# 2. the server.
if [[ -z "${ADLEDGER_BIN:-}" ]]; then
    cargo build -p adledger --locked --quiet
    BIN="${CARGO_TARGET_DIR:-target}/debug/adledger"
else
    BIN="$ADLEDGER_BIN"
fi
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK/data"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --backend local \
    >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request, sys; urllib.request.urlopen('$BASE/healthz', timeout=1)" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "the server exited before it was ready:" >&2
        cat "$WORK/server.log" >&2
        exit 1
    fi
    sleep 0.1
done

# Seed a few ads, so reads, proofs and digests have something to find besides 404s.
python3 - "$BASE" <<'EOF'
import json, sys, urllib.request
base = sys.argv[1]
for i in range(3):
    body = json.dumps({"adTitle": f"seed ad {i}", "price": 10 + i, "tags": ["seed"]}).encode()
    request = urllib.request.Request(f"{base}/publisher/acme/ad", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()
EOF

# 3. the fuzzing run.
echo "==> schemathesis $SCHEMATHESIS_VERSION against $BASE (seed $SEED, $EXAMPLES examples per operation; report in $WORK)"
set +e
# From the temporary directory: schemathesis keeps a `.schemathesis/` cache in its working
# directory, which does not belong in the repository.
CONFIG="$PWD/scripts/schemathesis.toml"
(cd "$WORK" && "$VENV/bin/schemathesis" --config-file "$CONFIG" run "$BASE/openapi.json" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --seed "$SEED" \
    --max-examples "$EXAMPLES" \
    --workers 1 \
    --request-timeout 15 \
    --max-response-time 15 \
    --generation-database none \
    --no-color \
    --report junit --report-dir "$WORK")
STATUS=$?
set -e
if [[ $STATUS -ne 0 ]]; then
    echo "==> schemathesis failed (exit $STATUS); the server's log:" >&2
    tail -n 50 "$WORK/server.log" >&2
fi
exit $STATUS
