"""Opens N connections at once to an adledger server on 127.0.0.1:PORT and sends one
request on each (KIND: `create` = a ~600-byte create under one of 50 publishers, `search` =
`GET /search?q=bike`), then prints the status counts. Used to measure the server's RSS
under 10,000 concurrent requests (read VmRSS/VmHWM in /proc/PID/status around it):

    python3 bench/concurrent-load.py PORT 10000 create

Needs an open-files limit above N for this process and for the server.
"""
import asyncio, sys, time, json
HOST, PORT = "127.0.0.1", int(sys.argv[1])
N = int(sys.argv[2]); KIND = sys.argv[3]
body = json.dumps({"adTitle": "Bike", "adDescription": "x"*500, "price": 10, "currency": "EUR", "tags": ["a","b"]}).encode()
async def one(i, stats):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(HOST, PORT), 30)
        if KIND == "create":
            req = (f"POST /publisher/p{i%50}/ad HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()+body
        else:
            req = f"GET /search?q=bike HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        w.write(req); await w.drain()
        data = await asyncio.wait_for(r.read(), 60)
        code = data[9:12].decode(errors="replace")
        stats[code] = stats.get(code, 0) + 1
        w.close()
    except Exception as e:
        stats[type(e).__name__] = stats.get(type(e).__name__, 0) + 1
async def main():
    stats = {}
    t = time.time()
    await asyncio.gather(*(one(i, stats) for i in range(N)))
    print(KIND, N, "in %.1fs" % (time.time()-t), stats)
asyncio.run(main())
