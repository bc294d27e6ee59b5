"""A TCP proxy that makes a server distant: every byte reaches the other side half a round trip
after it was sent (each direction keeps its order and is never held up by the other, so
pipelining keeps its advantage), and a new connection costs one round trip before the server
sees it, as a TCP handshake does. Bandwidth is not limited.

Usage: python -m benchmarks.delay_proxy LISTEN_PORT TARGET_HOST:PORT RTT_MS
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _delayed_pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    """Forward what `reader` gives, each piece `delay` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(Exception):
            writer.write_eof()

    sender = asyncio.create_task(deliver())
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    queue.put_nowait((loop.time() + delay, b""))
    with contextlib.suppress(ConnectionError):
        await sender


async def _session(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target: tuple[str, int],
    rtt: float,
) -> None:
    """One connection: a handshake's round trip, then both directions delayed by half of it."""
    try:
        await asyncio.sleep(rtt)
        server_reader, server_writer = await asyncio.open_connection(*target)
        await asyncio.gather(
            _delayed_pipe(client_reader, server_writer, rtt / 2),
            _delayed_pipe(server_reader, client_writer, rtt / 2),
        )
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(Exception):
            client_writer.close()


async def main(listen_port: str, target: str, rtt_ms: str) -> None:
    """Serve until killed."""
    host, port = target.rsplit(":", 1)
    rtt = float(rtt_ms) / 1000
    server = await asyncio.start_server(
        lambda r, w: _session(r, w, (host, int(port)), rtt),
        "127.0.0.1",
        int(listen_port),
        backlog=1000,
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
