#!/usr/bin/env bash
# Runs a command next to AWS's DynamoDB Local, both inside a private network namespace.
#
#   scripts/dynamodb-local.sh COMMAND [ARGS...]
#   scripts/dynamodb-local.sh cargo test -p adledger-aws --locked
#
# What it does:
#
# 1. Installs DynamoDB Local once into a cache directory (idempotent): the jar ships
#    inside the npm package `amplify-dynamodb-simulator` (`package/emulator` holds
#    `DynamoDBLocal.jar` and `DynamoDBLocal_lib`). It needs Java 17 or newer; if `java`
#    is missing and this runs as root with apt-get, it installs Debian's
#    openjdk-17-jre-headless.
# 2. Starts DynamoDB Local and COMMAND in a new network namespace (and a new PID
#    namespace) whose only interface is loopback. DynamoDB Local cannot bind to loopback
#    only; inside the namespace nothing outside this sandbox can reach it. COMMAND gets
#    `ADLEDGER_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:PORT` and static credentials.
# 3. Stops everything when COMMAND ends: DynamoDB Local is killed by the trap, and the
#    PID namespace takes every process in it down with its first process, even if this
#    script itself is killed. Readiness and shutdown waits are bounded.
#
# COMMAND has no network but loopback: fetch and build before (for cargo:
# `cargo test -p adledger-aws --no-run --locked` first, so nothing needs downloading).
#
# Environment:
#   ADLEDGER_CACHE_DIR                cache root (default: ${XDG_CACHE_HOME:-~/.cache}/adledger)
#   ADLEDGER_DYNAMODB_LOCAL_PORT      port inside the namespace (default 8000)
#   ADLEDGER_DYNAMODB_LOCAL_JAVA_OPTS JVM options (default -Xmx1g)
#   ADLEDGER_DYNAMODB_LOCAL_WAIT      seconds to wait for readiness (default 60)
set -euo pipefail

# The npm package version that carries the jar; bump deliberately.
SIMULATOR_VERSION="2.9.30"
PORT="${ADLEDGER_DYNAMODB_LOCAL_PORT:-8000}"
WAIT_SECONDS="${ADLEDGER_DYNAMODB_LOCAL_WAIT:-60}"
CACHE_ROOT="${ADLEDGER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/adledger}"
INSTALL_DIR="$CACHE_ROOT/dynamodb-local/$SIMULATOR_VERSION"

say() { echo "dynamodb-local: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

ensure_java() {
    if command -v java >/dev/null 2>&1; then
        return
    fi
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "java not found; installing openjdk-17-jre-headless with apt-get"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >&2
        return
    fi
    die "java (17 or newer) is required: install a JRE, e.g. 'apt-get install openjdk-17-jre-headless'"
}

install_dynamodb_local() {
    if [[ -f "$INSTALL_DIR/DynamoDBLocal.jar" && -d "$INSTALL_DIR/DynamoDBLocal_lib" ]]; then
        return
    fi
    command -v npm >/dev/null 2>&1 ||
        die "npm is required once, to fetch DynamoDB Local (npm package amplify-dynamodb-simulator)"
    say "installing DynamoDB Local (amplify-dynamodb-simulator@$SIMULATOR_VERSION) into $INSTALL_DIR"
    mkdir -p "$(dirname "$INSTALL_DIR")"
    local work
    work=$(mktemp -d "$(dirname "$INSTALL_DIR")/.install.XXXXXX")
    # shellcheck disable=SC2064 # expand now: `work` is local
    trap "rm -rf '$work'" RETURN
    (cd "$work" && timeout 300 npm pack --silent "amplify-dynamodb-simulator@$SIMULATOR_VERSION" >/dev/null) ||
        die "npm pack amplify-dynamodb-simulator@$SIMULATOR_VERSION failed"
    tar -xzf "$work"/amplify-dynamodb-simulator-*.tgz -C "$work" package/emulator ||
        die "the npm package has no package/emulator directory"
    [[ -f "$work/package/emulator/DynamoDBLocal.jar" ]] ||
        die "package/emulator/DynamoDBLocal.jar is missing from the npm package"
    # Rename into place last, so an interrupted install never looks complete.
    rm -rf "$INSTALL_DIR"
    mv "$work/package/emulator" "$INSTALL_DIR"
}

# Runs inside the namespaces: loopback up, DynamoDB Local up, the command, then teardown.
inside() {
    ip link set dev lo up || die "cannot bring up loopback in the network namespace"

    local log="$CACHE_ROOT/dynamodb-local/last-run.log"
    cd "$INSTALL_DIR"
    # shellcheck disable=SC2086 # JAVA_OPTS is a list of options
    java ${ADLEDGER_DYNAMODB_LOCAL_JAVA_OPTS:--Xmx1g} \
        -Djava.library.path=./DynamoDBLocal_lib \
        -jar DynamoDBLocal.jar -inMemory -sharedDb -disableTelemetry -port "$PORT" \
        >"$log" 2>&1 &
    local java_pid=$!
    cd "$OLDPWD"

    stop_java() {
        if kill -0 "$java_pid" 2>/dev/null; then
            kill -TERM "$java_pid" 2>/dev/null || true
            local i
            for ((i = 0; i < 50; i++)); do
                kill -0 "$java_pid" 2>/dev/null || break
                sleep 0.2
            done
            kill -KILL "$java_pid" 2>/dev/null || true
        fi
        wait "$java_pid" 2>/dev/null || true
    }
    trap stop_java EXIT
    trap 'exit 130' INT TERM

    local deadline=$((SECONDS + WAIT_SECONDS))
    until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
        if ! kill -0 "$java_pid" 2>/dev/null; then
            cat "$log" >&2
            die "DynamoDB Local exited before accepting connections (log above)"
        fi
        if ((SECONDS >= deadline)); then
            cat "$log" >&2
            die "DynamoDB Local did not accept connections on port $PORT within ${WAIT_SECONDS}s"
        fi
        sleep 0.2
    done
    say "DynamoDB Local ready on 127.0.0.1:$PORT (private network namespace)"

    export ADLEDGER_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$PORT"
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
    export AWS_REGION="${AWS_REGION:-us-east-1}"
    local rc=0
    "$@" || rc=$?
    exit "$rc"
}

main() {
    if [[ "${1:-}" == "--inside-namespace" ]]; then
        shift
        inside "$@"
    fi
    [[ $# -gt 0 && "$1" != "-h" && "$1" != "--help" ]] || usage
    command -v unshare >/dev/null 2>&1 || die "unshare (util-linux) is required"
    command -v ip >/dev/null 2>&1 || die "ip (iproute2) is required"
    ensure_java
    install_dynamodb_local
    mkdir -p "$CACHE_ROOT/dynamodb-local"
    # --pid --fork: when the script's inner copy (PID 1 there) ends, the kernel kills
    # everything left in the namespace. --mount-proc makes `ps` inside see only it.
    local self
    self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
    exec unshare --net --pid --fork --mount-proc -- bash "$self" --inside-namespace "$@"
}

main "$@"
