"""A minimal accept-and-discard SMTP server, used only when Postfix's smtp-sink is missing."""

from __future__ import annotations

import asyncio
import sys


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every command with success and drop the message data."""
    writer.write(b"220 sink ESMTP\r\n")
    in_data = False
    while line := await reader.readline():
        if in_data:
            if line == b".\r\n":
                in_data = False
                writer.write(b"250 2.0.0 Ok: discarded\r\n")
            continue
        verb = line[:4].upper()
        if verb == b"DATA":
            in_data = True
            writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 2.0.0 Bye\r\n")
            await writer.drain()
            break
        elif verb == b"EHLO":
            writer.write(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        else:
            writer.write(b"250 2.0.0 Ok\r\n")
        await writer.drain()
    writer.close()


async def main(port: int) -> None:
    """Serve on 127.0.0.1:port until killed."""
    server = await asyncio.start_server(_session, "127.0.0.1", port, backlog=1000)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
