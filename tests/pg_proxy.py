"""A TCP relay in front of PostgreSQL, to cut the network or stall it in tests."""

from __future__ import annotations

import asyncio


class Proxy:
    """A TCP relay in front of PostgreSQL that a test can cut (connections dropped, new ones refused) or stall."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.AbstractServer | None = None
        self.transports: list[asyncio.WriteTransport] = []
        self.stall = False

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """The network goes away: listening stops and every relayed connection is reset."""
        assert self.server is not None
        self.server.close()
        for transport in self.transports:
            transport.abort()
        self.transports.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.transports.append(writer.transport)
        if self.stall:  # accept, then never answer
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.transports.append(up_writer.transport)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


class ThreadedProxy:
    """A `Proxy` on an event loop of its own thread, for servers in other processes while the test blocks."""

    def __init__(self, host: str, port: int) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = Proxy(host, port)
        self._do(self.proxy.start())

    @property
    def port(self) -> int:
        return self.proxy.port

    def _do(self, coro) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def cut(self) -> None:
        self._do(self.proxy.cut())

    def restore(self) -> None:
        self._do(self.proxy.start())

    def close(self) -> None:
        self._do(self.proxy.cut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
