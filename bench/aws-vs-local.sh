#!/usr/bin/env bash
# The bench against the local backend and the AWS backend (DynamoDB Local) in the same run,
# with and without --settle, then the DynamoDB requests one create and one get cost.
# Run it next to DynamoDB Local, after a release build:
#
#   cargo build --release -p adledger -p adledger-bench
#   scripts/dynamodb-local.sh bench/aws-vs-local.sh
#
# Environment: CREATES, GETS, SEARCHES (default 5000, 5000, 500), COUNT_N (default 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
E="$ADLEDGER_TEST_DYNAMODB_ENDPOINT"
B="$PWD/target/release/adledger"
BENCH="$PWD/target/release/adledger-bench"
PARAMS=(--creates "${CREATES:-5000}" --gets "${GETS:-5000}" --searches "${SEARCHES:-500}")
work=$(mktemp -d /tmp/adledger-bench.XXXXXX)
# aws_server STEM: a server binary for the bench that runs the AWS backend on fresh tables.
source bench/aws-server.sh
for settle in "" "--settle"; do
    echo "== local backend $settle; load $(cat /proc/loadavg)"
    RUST_LOG=warn "$BENCH" $settle "${PARAMS[@]}" 2>/dev/null
    server=$(aws_server bench)
    echo "== aws backend (DynamoDB Local) $settle; load $(cat /proc/loadavg)"
    RUST_LOG=warn "$BENCH" --server-bin "$server" $settle "${PARAMS[@]}" 2>/dev/null
done
echo "== load: $(cat /proc/loadavg)"

echo "== DynamoDB requests per create / per get (a fresh ledger, a server started here)"
prefix="count-$(date +%s)-"
"$B" aws init --dynamodb-endpoint "$E" --table-prefix "$prefix" >/dev/null
mkfifo "$work/out"
RUST_LOG=warn "$B" serve --listen 127.0.0.1:0 --backend aws --auth none --dynamodb-endpoint "$E" \
    --table-prefix "$prefix" --data-dir "$work/count-data" >"$work/out" 2>"$work/count.log" &
pid=$!
exec 3<"$work/out"
read -r -t 60 line <&3
url="${line#adledger listening on }"
cat <&3 >/dev/null &
counts() { curl -s --noproxy '*' "$url/healthz" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin).get("dynamodbRequests",{}),sort_keys=True))'; }
N=${COUNT_N:-2000}
c0=$(counts)
RUST_LOG=warn "$BENCH" --url "$url" --healthz 0 --creates "$N" --gets 0 --searches 0 2>/dev/null
c1=$(counts)
# Let the projection finish (it writes what the creates committed), then count again.
RUST_LOG=warn "$BENCH" --url "$url" --healthz 0 --creates 1 --gets 1 --settle --searches 0 2>/dev/null >/dev/null
c2=$(counts)
RUST_LOG=warn "$BENCH" --url "$url" --healthz 0 --creates "$N" --gets "$N" --settle --searches 0 2>/dev/null
c3=$(counts)
python3 - "$c0" "$c1" "$c2" "$c3" "$N" <<'PY'
import json,sys
c0,c1,c2,c3=(json.loads(a) for a in sys.argv[1:5]); n=int(sys.argv[5])
d=lambda a,b:{k:b.get(k,0)-a.get(k,0) for k in sorted(set(a)|set(b)) if b.get(k,0)-a.get(k,0)}
per=lambda x,k:{o:round(v/k,3) for o,v in x.items()}
w=d(c0,c1); p=d(c1,c2); g=d(c2,c3)
print("creates phase only (", n, "creates + 256 warm-up healthz):", w, "per create:", per(w,n))
print("until the projection caught up (+1 create, 1 get, settle polls):", p, "per create:", per(p,n))
print("writes + projection per create:", per({k:w.get(k,0)+p.get(k,0) for k in set(w)|set(p)},n))
print("second run (", n, "creates +", n, "gets after settling, + warm-up):", g)
gets={k:g.get(k,0)-w.get(k,0)-p.get(k,0) for k in g}
print("  minus the first run's creates+projection, per get:", per(gets,n))
PY
kill -TERM "$pid"; wait "$pid" || true
echo "== load after: $(cat /proc/loadavg)"
rm -rf "$work"
