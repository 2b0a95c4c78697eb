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

The units in the table are billed by DynamoDB's rules from the requests on the wire:
the server talks to DynamoDB through `dynamodb_meter.py`, a loopback proxy that sizes
every item written and read (1 KB per write unit, 4 KB per strongly consistent read
unit, transactions double). DynamoDB Local's own `ConsumedCapacity` answers are printed
beside them but are not the bill: Local misreports transactions (ten 500-byte Puts in
one `TransactWriteItems` report 4 write units; DynamoDB bills 20). `--no-meter` talks to
the endpoint directly and reports only what it says (against real DynamoDB, that is
the bill, except for writes refused by their condition: billed but not reported).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dynamodb_meter  # noqa: E402  (beside this script)

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
    ap.add_argument("--no-meter", action="store_true",
                    help="no billing proxy: only the units DynamoDB reports")
    ap.add_argument("--monthly-creates", type=float, default=1e6)
    ap.add_argument("--monthly-gets", type=float, default=50e6)
    ap.add_argument("--monthly-searches", type=float, default=10e6)
    args = ap.parse_args()
    if not args.endpoint:
        sys.exit("no DynamoDB endpoint: run under scripts/dynamodb-local.sh or pass --endpoint")
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin} does not exist: cargo build --release -p adledger")

    meter = None
    endpoint = args.endpoint
    if not args.no_meter:
        endpoint, meter = dynamodb_meter.start(args.endpoint)

    def books(base):
        requests, read, write = health(base)
        if meter is None:
            return requests, read, write, read, write, {}
        m_requests, m_read, m_write, tables = meter.totals()
        # Per table, named without the run's prefix (journal, state, …).
        tables = {t[len(prefix):] if t.startswith(prefix) else t: u for t, u in tables.items()}
        return m_requests, m_read, m_write, read, write, tables

    prefix = f"cost-{int(time.time() * 1000)}-"
    subprocess.run([args.bin, "aws", "init", "--dynamodb-endpoint", endpoint,
                    "--table-prefix", prefix], check=True, stdout=subprocess.DEVNULL)
    log = tempfile.NamedTemporaryFile(prefix="aws-cost-", suffix=".log", delete=False)
    # The search index (tantivy, beside the server) in a fresh directory of its own.
    data_dir = tempfile.mkdtemp(prefix="aws-cost-data-")
    server = subprocess.Popen(
        [args.bin, "serve", "--backend", "aws", "--auth", "none", "--listen", "127.0.0.1:0",
         "--dynamodb-endpoint", endpoint, "--table-prefix", prefix,
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
        before = books(base)
        for name, n, work in [("creates", args.creates, create), ("gets", args.gets, get),
                              ("searches", args.searches, search)]:
            run_parallel(n, args.threads, work)
            if name == "creates":
                # Let the projection finish its writes, so they count with the creates.
                call(base, "GET", f"/publisher/{ids[-1][0]}/ad?limit=1")
            after = books(base)
            per = 1000.0 / n
            rows.append({"phase": name, "operations": n,
                         "requests_per_1000": (after[0] - before[0]) * per,
                         "read_units_per_1000": (after[1] - before[1]) * per,
                         "write_units_per_1000": (after[2] - before[2]) * per,
                         "reported_read_units_per_1000": (after[3] - before[3]) * per,
                         "reported_write_units_per_1000": (after[4] - before[4]) * per,
                         "by_table_per_1000": {
                             t: {"read_units": (u[0] - before[5].get(t, (0, 0))[0]) * per,
                                 "write_units": (u[1] - before[5].get(t, (0, 0))[1]) * per}
                             for t, u in sorted(after[5].items())}})
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
    by_operation = {}
    if meter is not None:
        with meter.lock:
            by_operation = {op: {"requests": r[0], "read_units": r[1], "write_units": r[2]}
                            for op, r in sorted(meter.by_operation.items())}
    unbilled = [op for op in by_operation if "not billed" in op]
    if unbilled:
        sys.exit(f"the meter could not bill some requests: {unbilled}")
    result = {"rows": rows, "workload": monthly, "monthly_usd": usd,
              "units": "billed by DynamoDB's rules (dynamodb_meter.py)" if meter
              else "as reported by the endpoint",
              "by_operation": by_operation,
              "prices": {"date": PRICE_DATE, "region": "us-east-1",
                         "usd_per_million_write_units": USD_PER_MILLION_WRITE_UNITS,
                         "usd_per_million_read_units": USD_PER_MILLION_READ_UNITS}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"units: {result['units']}; in brackets what the endpoint reported")
    print(f"{'phase':<10}{'ops':>8}{'requests/1000':>16}{'RCU/1000':>20}{'WCU/1000':>20}")
    for r in rows:
        rcu = f"{r['read_units_per_1000']:.1f} [{r['reported_read_units_per_1000']:.0f}]"
        wcu = f"{r['write_units_per_1000']:.1f} [{r['reported_write_units_per_1000']:.0f}]"
        print(f"{r['phase']:<10}{r['operations']:>8}{r['requests_per_1000']:>16.1f}"
              f"{rcu:>20}{wcu:>20}")
        for t, u in r["by_table_per_1000"].items():
            if u["read_units"] or u["write_units"]:
                print(f"  {t + ' table':<32}{u['read_units']:>20.1f}{u['write_units']:>20.1f}")
    for op, r in by_operation.items():
        print(f"  {op:<22}{r['requests']:>8} requests{r['read_units']:>12.1f} RCU"
              f"{r['write_units']:>12.1f} WCU")
    print(f"searches returned {sum(hits) / len(hits):.1f} hits on average")
    print(f"monthly: {monthly['creates']:,.0f} creates, {monthly['gets']:,.0f} gets, "
          f"{monthly['searches']:,.0f} searches -> ${usd:,.2f} in DynamoDB request units "
          f"(on demand, us-east-1, prices of {PRICE_DATE}; storage and OpenSearch extra)")


if __name__ == "__main__":
    main()
