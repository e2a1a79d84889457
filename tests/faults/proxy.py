"""A TCP fault proxy: forwards connections to one of its upstreams, and on demand refuses them
(its listener closed, so connecting fails) or hangs them (accepted, never answered).

Connection faults belong to the network between processes, not to any helpdesk, so they live
here rather than in the simulators: one proxy serves all three helpdesks' APIs and the receivers
alike, and the simulator behind it keeps answering its `/_sim` controls during the fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools


class FaultProxy:
    """Listens on 127.0.0.1:`port` and forwards each connection to the next of `upstreams`."""

    def __init__(self, port: int, upstreams: list[int]) -> None:
        self.port = port
        self.upstreams = list(upstreams)
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._hang_until: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Requests (reads) held by a hang so far.
        self.hung = 0

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (again)."""
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._hang_until is not None:
            self._hang_until.set()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def refuse(self, seconds: float) -> None:
        """Close the listener and every connection for `seconds`: connecting is refused."""
        await self.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(seconds)  # the fault's length, not a synchronisation
        await self.start()

    async def hang(self, seconds: float) -> None:
        """For `seconds`, nothing sent through the proxy goes on; then those connections close
        unanswered."""
        event = asyncio.Event()
        self._hang_until = event
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(seconds)  # the fault's length, not a synchronisation
        self._hang_until = None
        event.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            port = self.upstreams[next(self._turn) % len(self.upstreams)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return
            self._writers.add(up_writer)
            try:
                await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
            finally:
                self._writers.discard(up_writer)
                up_writer.close()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            hang = self._hang_until
            if hang is not None:
                self.hung += 1
                await hang.wait()
                # A hung request is never answered: its connection closes at the fault's end.
                raise ConnectionResetError("hung")
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
