#!/usr/bin/env python3
"""What the AWS backend's requests cost, as DynamoDB reports it.

Starts `adledger serve --backend aws` on fresh tables (DynamoDB Local, or any endpoint
given), runs creates, then gets, then searches, and reads the server's `/healthz`
(`dynamodbRequests`, `dynamodbCapacity`: the capacity units DynamoDB returned for
`ReturnConsumedCapacity: TOTAL`) after each phase. Prints DynamoDB requests, read units
and write units per 1,000 operations of each kind (the projection's writes and the idle
polling that ran during a phase are counted in that phase), and the monthly on-demand
cost of a stated workload.

    scripts/dynamodb-local.sh python3 bench/aws-cost.py            # DynamoDB Local
    python3 bench/aws-cost.py --bin target/release/adledger --creates 2000 --json

DynamoDB Local reports capacity units as DynamoDB does for the same items (item size
rounded up to 1 KB per write unit, 4 KB per read unit; transactions cost double), which
is what on-demand billing counts. Writes refused by their condition are billed but not
reported (see `backends/aws/src/capacity.rs`), so the figures are a floor, exact when
writes do not race (one server, as here).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# DynamoDB on-demand, us-east-1, as published on AWS's pricing page after the price cut
# effective 2024-11-01 (check the current list before relying on it).
PRICE_DATE = "2024-11-01"
USD_PER_MILLION_WRITE_UNITS = 0.625
USD_PER_MILLION_READ_UNITS = 0.125

WORDS = ["bike", "sofa", "lamp", "guitar", "camera", "desk", "phone", "chair", "tent", "kayak"]


def call(base, method, path, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def health(base):
    _, h = call(base, "GET", "/healthz")
    requests = sum(h.get("dynamodbRequests", {}).values())
    cap = h.get("dynamodbCapacity", {})
    read = sum(u["read"] for u in cap.values())
    write = sum(u["write"] for u in cap.values())
    return requests, read, write


def run_parallel(n, threads, work):
    errors = []
    counter = iter(range(n))
    lock = threading.Lock()

    def loop():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                work(i)
            except Exception as e:  # reported below, and fails the run
                errors.append(repr(e))

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        sys.exit(f"{len(errors)} requests failed, e.g. {errors[0]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="target/release/adledger")
    ap.add_argument("--endpoint", default=os.environ.get("ADLEDGER_TEST_DYNAMODB_ENDPOINT"))
    ap.add_argument("--creates", type=int, default=1000)
    ap.add_argument("--gets", type=int, default=1000)
    ap.add_argument("--searches", type=int, default=200)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--monthly-creates", type=float, default=1e6)
    ap.add_argument("--monthly-gets", type=float, default=50e6)
    ap.add_argument("--monthly-searches", type=float, default=10e6)
    args = ap.parse_args()
    if not args.endpoint:
        sys.exit("no DynamoDB endpoint: run under scripts/dynamodb-local.sh or pass --endpoint")
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin} does not exist: cargo build --release -p adledger")

    prefix = f"cost-{int(time.time() * 1000)}-"
    subprocess.run([args.bin, "aws", "init", "--dynamodb-endpoint", args.endpoint,
                    "--table-prefix", prefix], check=True, stdout=subprocess.DEVNULL)
    log = tempfile.NamedTemporaryFile(prefix="aws-cost-", suffix=".log", delete=False)
    # The search index (tantivy, beside the server) in a fresh directory of its own.
    data_dir = tempfile.mkdtemp(prefix="aws-cost-data-")
    server = subprocess.Popen(
        [args.bin, "serve", "--backend", "aws", "--auth", "none", "--listen", "127.0.0.1:0",
         "--dynamodb-endpoint", args.endpoint, "--table-prefix", prefix,
         "--data-dir", data_dir],
        stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("adledger listening on "):
            sys.exit(f"the server did not start (log: {log.name}): {line!r}")
        base = line.split()[-1]
        rng = random.Random(7)
        ids = []
        ids_lock = threading.Lock()

        def create(i):
            body = {"adTitle": f"{rng.choice(WORDS)} {i}", "adDescription": " ".join(
                rng.choice(WORDS) for _ in range(40)), "price": f"{rng.randint(1, 999)}.99",
                "currency": "EUR", "category": rng.choice(WORDS), "tags": [rng.choice(WORDS)]}
            status, ad = call(base, "POST", f"/publisher/p{i % 8}/ad", body)
            assert status == 201, status
            with ids_lock:
                ids.append((f"p{i % 8}", ad["adId"]))

        def get(i):
            publisher, ad_id = ids[i % len(ids)]
            status, _ = call(base, "GET", f"/publisher/{publisher}/ad/{ad_id}")
            assert status == 200, status

        hits = []

        def search(i):
            status, page = call(base, "GET", f"/search?q={WORDS[i % len(WORDS)]}&limit=20")
            assert status == 200, status
            hits.append(len(page["items"]))

        rows = []
        before = health(base)
        for name, n, work in [("creates", args.creates, create), ("gets", args.gets, get),
                              ("searches", args.searches, search)]:
            run_parallel(n, args.threads, work)
            if name == "creates":
                # Let the projection finish its writes, so they count with the creates.
                call(base, "GET", f"/publisher/{ids[-1][0]}/ad?limit=1")
            after = health(base)
            per = 1000.0 / n
            rows.append({"phase": name, "operations": n,
                         "requests_per_1000": (after[0] - before[0]) * per,
                         "read_units_per_1000": (after[1] - before[1]) * per,
                         "write_units_per_1000": (after[2] - before[2]) * per})
            before = after
    finally:
        server.terminate()
        server.wait(timeout=30)
    if not hits or min(hits) == 0:
        sys.exit(f"a search found nothing (hits per search: {sorted(set(hits))}): the "
                 f"figures would not be a search's")

    monthly = {"creates": args.monthly_creates, "gets": args.monthly_gets,
               "searches": args.monthly_searches}
    usd = 0.0
    for row in rows:
        k = monthly[row["phase"]] / 1000.0
        usd += k * (row["write_units_per_1000"] * USD_PER_MILLION_WRITE_UNITS
                    + row["read_units_per_1000"] * USD_PER_MILLION_READ_UNITS) / 1e6
    result = {"rows": rows, "workload": monthly, "monthly_usd": usd,
              "prices": {"date": PRICE_DATE, "region": "us-east-1",
                         "usd_per_million_write_units": USD_PER_MILLION_WRITE_UNITS,
                         "usd_per_million_read_units": USD_PER_MILLION_READ_UNITS}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'phase':<10}{'ops':>8}{'requests/1000':>16}{'RCU/1000':>12}{'WCU/1000':>12}")
    for r in rows:
        print(f"{r['phase']:<10}{r['operations']:>8}{r['requests_per_1000']:>16.1f}"
              f"{r['read_units_per_1000']:>12.1f}{r['write_units_per_1000']:>12.1f}")
    print(f"searches returned {sum(hits) / len(hits):.1f} hits on average")
    print(f"monthly: {monthly['creates']:,.0f} creates, {monthly['gets']:,.0f} gets, "
          f"{monthly['searches']:,.0f} searches -> ${usd:,.2f} in DynamoDB request units "
          f"(on demand, us-east-1, prices of {PRICE_DATE}; storage and OpenSearch extra)")


if __name__ == "__main__":
    main()
