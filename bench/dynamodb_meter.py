"""A loopback proxy in front of DynamoDB that bills every request by DynamoDB's rules.

DynamoDB Local misreports the capacity of transactions (`ReturnConsumedCapacity` on a
`TransactWriteItems` of ten 500-byte Puts reports 4 write units; DynamoDB bills 20), and
the journal append and the state projection are transactions. So the cost bench does
not take DynamoDB Local's word for it: this proxy sees every request and response on
the wire and computes the request units DynamoDB's on-demand pricing charges for them,
from the sizes of the items involved:

- An item's size is the sum of its attribute names and values (strings and binaries
  their UTF-8 / raw bytes, numbers 1 byte per two significant digits plus 1, booleans
  and nulls 1, lists and maps 3 bytes plus 1 per element plus their elements).
- A write costs 1 unit per started KB of the larger of the item before and after it;
  in a transaction 2. A condition check in a transaction costs 2 per KB of the item.
- A read costs 1 unit per started 4 KB if strongly consistent, half that if not, 2 in
  a transaction; a Query or Scan sums the sizes of the items it read, then rounds up.

The size of an item before a write, and of what a condition check or a key-only read
looked at, is the size this proxy last saw written for that key (the bench starts from
fresh tables, so every item was written through it); after an `UpdateItem` the proxy
reads the item back (a request it does not bill). Writes refused by their condition and
cancelled transactions are billed like committed ones, as DynamoDB does.

Standard library only; used by `aws-cost.py`.
"""

import base64
import http.client
import json
import math
import threading
import zlib
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KB = 1024


def value_size(value):
    """The size of one attribute value (without its name), by DynamoDB's rules."""
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return number_size(v)
    if kind == "B":
        return len(base64.b64decode(v))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(number_size(n) for n in v)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in v)
    if kind == "L":
        return 3 + sum(1 + value_size(e) for e in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(e) for k, e in v.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def number_size(text):
    try:
        digits = Decimal(text).normalize().as_tuple().digits
    except InvalidOperation:
        digits = text
    significant = str("".join(map(str, digits))).strip("0") or "0"
    return math.ceil(len(significant) / 2) + 1


def item_size(item):
    return sum(len(name.encode()) + value_size(v) for name, v in (item or {}).items())


def write_units(size):
    return max(1, math.ceil(size / KB))


def read_units(size, consistent):
    units = max(1, math.ceil(size / (4 * KB)))
    return units if consistent else units / 2


class Meter:
    """The proxy's books: requests and billed units by operation, and the items it saw."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.lock = threading.Lock()
        self.by_operation = {}
        self.by_table = {}  # table -> [read units, write units]
        self.sizes = {}  # (table, key json) -> bytes
        self.keys = {}  # table -> key attribute names
        self.local = threading.local()

    # -- the books ---------------------------------------------------------------------

    def totals(self):
        """(requests, read units, write units, {table: (read, write)}) so far."""
        with self.lock:
            rows = list(self.by_operation.values())
            tables = {t: tuple(r) for t, r in self.by_table.items()}
        return (sum(r[0] for r in rows), sum(r[1] for r in rows), sum(r[2] for r in rows),
                tables)

    def _charge(self, table, read=0.0, write=0.0):
        """Books units against `table` too (a transaction may span tables)."""
        with self.lock:
            row = self.by_table.setdefault(table, [0.0, 0.0])
            row[0] += read
            row[1] += write
        return read or write

    def _add(self, operation, read=0.0, write=0.0):
        with self.lock:
            row = self.by_operation.setdefault(operation, [0, 0.0, 0.0])
            row[0] += 1
            row[1] += read
            row[2] += write

    # -- talking to DynamoDB -----------------------------------------------------------

    def forward(self, headers, body):
        """Sends one request to DynamoDB on this thread's connection: (status, headers, body)."""
        for attempt in (0, 1):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(*self.target, timeout=60)
            try:
                conn.request("POST", "/", body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _shadow(self, operation, payload, headers):
        """A request of the proxy's own (not billed): its decoded answer, or None."""
        h = {k: v for k, v in headers.items() if k.lower() in ("authorization", "x-amz-date")}
        h["Content-Type"] = "application/x-amz-json-1.0"
        h["X-Amz-Target"] = f"DynamoDB_20120810.{operation}"
        status, _, body = self.forward(h, json.dumps(payload).encode())
        return json.loads(body) if status == 200 else None

    def _key_names(self, table, headers):
        if table not in self.keys:
            answer = self._shadow("DescribeTable", {"TableName": table}, headers)
            schema = (answer or {}).get("Table", {}).get("KeySchema", [])
            self.keys[table] = [k["AttributeName"] for k in schema]
        return self.keys[table]

    def _key_of(self, table, item, headers):
        names = self._key_names(table, headers)
        return (table, json.dumps({n: item.get(n) for n in names}, sort_keys=True))

    # -- billing -----------------------------------------------------------------------

    def _size_before(self, table, key, headers):
        return self.sizes.get(self._key_of(table, key, headers), 0)

    def _write(self, kind, action, headers, committed):
        """Units of one write (`Put`, `Update`, `Delete`, `ConditionCheck`), and its size after."""
        table = action["TableName"]
        key = action.get("Key") or action.get("Item") or {}
        before = self._size_before(table, key, headers)
        if kind == "Put":
            after = item_size(action["Item"])
        elif kind == "Delete":
            after = 0
        elif kind == "ConditionCheck":
            return write_units(before)  # charged to its table by the caller
        else:  # Update: read back what DynamoDB made of it
            after = before
            if committed:
                got = self._shadow("GetItem", {"TableName": table, "Key": key,
                                               "ConsistentRead": True}, headers)
                after = item_size((got or {}).get("Item"))
        if committed:
            with self.lock:
                self.sizes[self._key_of(table, key, headers)] = after
        return write_units(max(before, after))

    def bill(self, operation, request, status, response, headers):
        ok = status == 200
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            kind = operation[:-4]
            units = self._write(kind, request, headers, ok)
            # A refused condition is billed; a request DynamoDB turned away is not.
            refused = not ok and "ConditionalCheckFailed" in json.dumps(response or {})
            units = units if ok or refused else 0
            self._charge(request["TableName"], write=units)
            self._add(operation, write=units)
        elif operation == "TransactWriteItems":
            cancelled = not ok and "TransactionCanceled" in json.dumps(response or {})
            units = 0
            if ok or cancelled:
                for action in request["TransactItems"]:
                    (kind, body), = action.items()
                    units += self._charge(body["TableName"],
                                          write=2 * self._write(kind, body, headers, ok))
            self._add(operation, write=units)
        elif operation == "BatchWriteItem":
            unprocessed = (response or {}).get("UnprocessedItems", {}) if ok else None
            units = 0
            if ok:
                for table, writes in request["RequestItems"].items():
                    left = [json.dumps(w, sort_keys=True) for w in unprocessed.get(table, [])]
                    for w in writes:
                        if json.dumps(w, sort_keys=True) in left:
                            continue
                        kind, body = ("Put", w["PutRequest"]) if "PutRequest" in w \
                            else ("Delete", w["DeleteRequest"])
                        units += self._charge(table, write=self._write(
                            kind, {"TableName": table, **body}, headers, True))
            self._add(operation, write=units)
        elif operation == "GetItem":
            consistent = bool(request.get("ConsistentRead"))
            units = 0
            if ok:
                item = response.get("Item")
                size = self._size_before(request["TableName"], request["Key"], headers) \
                    if item else 0
                units = self._charge(request["TableName"],
                                     read=read_units(max(size, item_size(item)), consistent))
            self._add(operation, read=units)
        elif operation == "BatchGetItem":
            units = 0
            if ok:
                for table, items in response.get("Responses", {}).items():
                    consistent = bool(request["RequestItems"][table].get("ConsistentRead"))
                    for item in items:
                        size = max(item_size(item), self._size_before(table, item, headers))
                        units += self._charge(table, read=read_units(size, consistent))
                    asked = len(request["RequestItems"][table]["Keys"])
                    left = len(response.get("UnprocessedKeys", {}).get(table, {})
                               .get("Keys", []))
                    units += self._charge(table, read=read_units(0, consistent)
                                          * max(0, asked - left - len(items)))
            self._add(operation, read=units)
        elif operation in ("Query", "Scan"):
            units = 0
            if ok:
                table = request["TableName"]
                size = sum(max(item_size(i), self._size_before(table, i, headers))
                           for i in response.get("Items", []))
                units = self._charge(table,
                                     read=read_units(size, bool(request.get("ConsistentRead"))))
            self._add(operation, read=units)
        elif operation == "TransactGetItems":
            units = 0
            if ok:
                for got, asked in zip(response.get("Responses", []),
                                      request["TransactItems"]):
                    units += self._charge(asked["Get"]["TableName"],
                                          read=2 * read_units(item_size(got.get("Item")), True))
            self._add(operation, read=units)
        else:
            self._add(operation)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    meter: Meter = None

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        status, resp_headers, resp_body = self.meter.forward(headers, body)
        operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        try:
            answer = resp_body
            if dict((k.lower(), v) for k, v in resp_headers).get("content-encoding") == "gzip":
                answer = zlib.decompress(resp_body, 16 + zlib.MAX_WBITS)
            self.meter.bill(operation, json.loads(body), status,
                            json.loads(answer) if answer else None, headers)
        except (ValueError, KeyError) as e:  # never stands between the server and DynamoDB
            self.meter._add(f"{operation} (not billed: {e!r})")
        self.send_response(status)
        for k, v in resp_headers:
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp_body)))
        self.end_headers()
        self.wfile.write(resp_body)


def start(endpoint):
    """Starts a metering proxy for `endpoint` (http://HOST:PORT); returns (url, meter)."""
    host, port = endpoint.split("//", 1)[-1].rstrip("/").rsplit(":", 1)
    meter = Meter(host, int(port))
    handler = type("MeteredHandler", (Handler,), {"meter": meter})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", meter
