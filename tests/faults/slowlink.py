"""A loopback TCP proxy to the test Postgres that holds back chosen client messages.

    with SlowLink(socket_dir, hold=b"...", seconds=2.0) as link:
        ... connect to link.url ...

Every byte goes through unchanged; a chunk the client sends that contains `hold` is kept
for `seconds` before it goes on, as a slow network would keep it. Runs its own event loop
in a thread, so a test's loop and the proxy's never wait on each other.
"""

from __future__ import annotations

import asyncio
import glob
import os
import threading
from types import TracebackType


class SlowLink:
    def __init__(self, socket_dir: str, *, hold: bytes, seconds: float) -> None:
        [self._socket] = [path for path in glob.glob(os.path.join(socket_dir, ".s.PGSQL.*")) if "lock" not in path]
        self.hold, self.seconds = hold, seconds
        self.held = 0  # chunks held back so far
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowlink", daemon=True)

    def url(self, user: str, database: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> SlowLink:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:  # the connections still open: closed on this loop, not after it
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_unix_connection(self._socket)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, holding: bool) -> None:
            try:
                while chunk := await source.read(65536):
                    if holding and self.hold in chunk:
                        self.held += 1
                        await asyncio.sleep(self.seconds)
                    sink.write(chunk)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pump(reader, upstream_writer, holding=True), pump(upstream_reader, writer, holding=False))
