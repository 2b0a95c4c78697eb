#!/usr/bin/env python3
"""A loopback TCP proxy that delays every byte by a fixed time in each direction.

    bench/latency-proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT DELAY_MS

It stands between the server and DynamoDB Local so the bench sees a region's round trip
(e.g. 4 ms each way) instead of loopback's. Each chunk read from one side is written to
the other DELAY_MS after it arrived, in order; the delay is latency, not a bandwidth
cap, so requests in flight on different connections (or pipelined on one) overlap as
they would on a real network. It prints "listening on PORT" once ready, and runs until
killed. Standard library only.
"""

import asyncio
import sys


async def pipe(reader, writer, delay):
    """Copies reader to writer, each chunk `delay` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def pump():
        while True:
            data = await reader.read(65536)
            await queue.put((loop.time() + delay, data))
            if not data:
                return

    async def drain():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(pump(), drain())
    except (ConnectionError, OSError):
        writer.close()


async def main():
    listen_port = int(sys.argv[1])
    host, port = sys.argv[2].rsplit(":", 1)
    delay = float(sys.argv[3]) / 1000.0

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer, delay),
            pipe(server_reader, client_writer, delay),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
