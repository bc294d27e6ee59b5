"""STARTTLS in front of smtp-sink (which speaks no TLS): greet, answer EHLO offering STARTTLS,
take the TLS handshake, then relay the decrypted session to smtp-sink, whose own EHLO answer
(PIPELINING and the rest) the client sees after STARTTLS.

Usage: python -m benchmarks.tls_front LISTEN_HOST:PORT SINK_HOST:PORT CERT KEY
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys

PRE_TLS_EHLO = b"250-tls-front\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 STARTTLS\r\n"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until it ends."""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.close()


async def _session(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    sink: tuple[str, int],
) -> None:
    """One client: plain greeting and EHLO, STARTTLS, then the sink's session inside TLS."""
    try:
        writer.write(b"220 tls-front ESMTP\r\n")
        while True:
            line = (await reader.readline()).strip().upper()
            if not line or line == b"QUIT":
                writer.write(b"221 bye\r\n")
                return
            if line.startswith((b"EHLO", b"HELO")):
                writer.write(PRE_TLS_EHLO)
            elif line == b"STARTTLS":
                writer.write(b"220 ready to start TLS\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"530 5.7.0 must issue a STARTTLS command first\r\n")
        await writer.start_tls(context)
        sink_reader, sink_writer = await asyncio.open_connection(*sink)
        await sink_reader.readline()  # the sink's greeting: the client already had ours
        await asyncio.gather(_pipe(reader, sink_writer), _pipe(sink_reader, writer))
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def main(listen: str, sink: str, cert: str, key: str) -> None:
    """Serve until killed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink_host, sink_port = sink.rsplit(":", 1)
    host, port = listen.rsplit(":", 1)
    server = await asyncio.start_server(
        lambda r, w: _session(r, w, context, (sink_host, int(sink_port))),
        host,
        int(port),
        backlog=1000,
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
