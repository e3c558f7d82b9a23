"""A TCP proxy on loopback that a test can cut: every connection through it dropped, new ones
closed at once, until it is mended. It stands between the tests and a real PostgreSQL server to
show what a lost server does to orcad."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class CuttableProxy:
    """Forwards 127.0.0.1:`port` to the host and port of `target_url`."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._target_url = target_url
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self.cut_off = False
        self.port = 0
        self._lose_answer_to: bytes | None = None

    @property
    def url(self) -> str:
        """`target_url` with the proxy in place of the server."""
        parts = urlsplit(self._target_url)
        user = f"{parts.username}@" if parts.username else ""
        return parts._replace(netloc=f"{user}127.0.0.1:{self.port}").geturl()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        """Drop every connection, and close new ones at once."""
        self.cut_off = True
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    def mend(self) -> None:
        self.cut_off = False

    def lose_answer_to(self, marker: bytes) -> None:
        """The next message from a client that holds `marker` reaches the server, but that
        client's connection is dropped before the answer comes back (the server's side is kept
        a moment, so the server acts on the message)."""
        self._lose_answer_to = marker

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._pumps.difference_update(pumps)
            for end in (writer, up_writer):
                self._links.discard(end)
                end.transport.abort()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        client: asyncio.StreamWriter | None = None,
    ) -> None:
        """Copy `source` to `sink`; from a `client`, watch for the message to lose the answer
        to."""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
                marker = self._lose_answer_to
                if client is not None and marker is not None and marker in data:
                    self._lose_answer_to = None
                    client.transport.abort()
                    await asyncio.sleep(0.5)
                    break
        sink.transport.abort()
