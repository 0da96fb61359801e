#!/usr/bin/env python3
"""A TCP relay that delays every byte by a fixed time each way: a network between a client and
a server on one machine (not a test; loopback has no latency worth the name, and this machine's
kernel has no netem).

    python bench/relay.py TARGET_PORT DELAY_MS     # prints the port it listens on, then relays

Each chunk read from one side is written to the other DELAY_MS later (in order: the delay is the
same for every chunk), so a request and its reply take 2 x DELAY_MS more than without the relay,
and what is sent back to back stays back to back, as on a link with that one-way latency and
ample bandwidth. Runs until killed. Used by bench/clientop.py --latency.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            loop.call_later(delay, writer.write, data)
    finally:
        loop.call_later(delay, writer.close)


async def _serve(target: int, delay: float) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(_pipe(reader, up_writer, delay), _pipe(up_reader, writer, delay),
                             return_exceptions=True)

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    target, delay_ms = int(argv[0]), float(argv[1])
    asyncio.run(_serve(target, delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
