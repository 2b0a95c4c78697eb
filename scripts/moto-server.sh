#!/usr/bin/env bash
# Runs a command next to moto's server (an AWS emulator: EventBridge, SQS, ...) on loopback.
#
#   scripts/moto-server.sh --install           installs moto once (needs the network)
#   scripts/moto-server.sh COMMAND [ARGS...]   runs COMMAND next to a fresh moto server
#   scripts/dynamodb-local.sh scripts/moto-server.sh cargo test -p adledger-tests
#
# What it does:
#
# 1. `--install`: installs `moto[server]` (a pinned version, from PyPI) once into a
#    virtualenv of its own under the cache directory (idempotent: kept while the pinned
#    version is the one installed). The run mode installs too when it can, but inside the
#    private network namespace of scripts/dynamodb-local.sh there is no network: install
#    before (scripts/test.sh does, in its build step).
# 2. Starts `moto_server` on 127.0.0.1 on a free port, waits (bounded) until it answers,
#    and runs COMMAND with `ADLEDGER_TEST_MOTO_ENDPOINT=http://127.0.0.1:PORT` (and
#    static credentials and a region, unless set already: moto accepts any).
# 3. Stops moto when COMMAND ends (trap), and exits with COMMAND's status.
#
# It nests inside scripts/dynamodb-local.sh (then moto too lives in the private network
# namespace) and works outside it (moto then listens on the machine's loopback only).
#
# Environment:
#   ADLEDGER_CACHE_DIR      cache root (default: ${XDG_CACHE_HOME:-~/.cache}/adledger)
#   ADLEDGER_MOTO_WAIT      seconds to wait for readiness (default 60)
set -euo pipefail

# The moto release the tests are written against; bump deliberately.
MOTO_VERSION="5.2.5"
WAIT_SECONDS="${ADLEDGER_MOTO_WAIT:-60}"
CACHE_ROOT="${ADLEDGER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/adledger}"
VENV="$CACHE_ROOT/moto/$MOTO_VERSION"

say() { echo "moto-server: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# A marker written after pip finished: an interrupted install never looks complete.
installed() {
    [[ -f "$VENV/.installed" && -x "$VENV/bin/moto_server" ]]
}

install_moto() {
    if installed; then
        return
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 (with venv) is required to install moto"
    say "installing moto[server]==$MOTO_VERSION into $VENV"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV" || die "python3 -m venv failed (install python3-venv)"
    timeout 600 "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "moto[server]==$MOTO_VERSION" ||
        die "pip install moto[server]==$MOTO_VERSION failed (no network? inside the network \
namespace of scripts/dynamodb-local.sh there is none: run scripts/moto-server.sh --install first)"
    "$VENV/bin/python" -c 'import moto.server' || die "moto installed but does not import"
    touch "$VENV/.installed"
}

free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

run() {
    install_moto
    mkdir -p "$CACHE_ROOT/moto"
    local log="$CACHE_ROOT/moto/last-run.log"
    local port
    port=$(free_port)
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    local moto_pid=$!

    stop_moto() {
        if kill -0 "$moto_pid" 2>/dev/null; then
            kill -TERM "$moto_pid" 2>/dev/null || true
            local i
            for ((i = 0; i < 50; i++)); do
                kill -0 "$moto_pid" 2>/dev/null || break
                sleep 0.2
            done
            kill -KILL "$moto_pid" 2>/dev/null || true
        fi
        wait "$moto_pid" 2>/dev/null || true
    }
    trap stop_moto EXIT
    trap 'exit 130' INT TERM

    local deadline=$((SECONDS + WAIT_SECONDS))
    # moto answers its own API (`/moto-api/`) once it is up.
    until "$VENV/bin/python" -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=2); sys.exit(0)" 2>/dev/null; do
        if ! kill -0 "$moto_pid" 2>/dev/null; then
            cat "$log" >&2
            die "moto_server exited before answering (log above)"
        fi
        if ((SECONDS >= deadline)); then
            cat "$log" >&2
            die "moto_server did not answer on 127.0.0.1:$port within ${WAIT_SECONDS}s"
        fi
        sleep 0.2
    done
    say "moto $MOTO_VERSION ready on 127.0.0.1:$port"

    export ADLEDGER_TEST_MOTO_ENDPOINT="http://127.0.0.1:$port"
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
    export AWS_REGION="${AWS_REGION:-us-east-1}"
    local rc=0
    "$@" || rc=$?
    exit "$rc"
}

main() {
    case "${1:-}" in
    --install)
        install_moto
        say "moto $MOTO_VERSION installed in $VENV"
        ;;
    "" | -h | --help) usage ;;
    *) run "$@" ;;
    esac
}

main "$@"
