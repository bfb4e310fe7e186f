"""What the project's HTTP test doubles (tools/livekit_double.py,
tools/expo_double.py) share: serving on 127.0.0.1 from a daemon thread, so a
synchronous fixture can start one and an asyncio test in the same process can
talk to it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Generic, Self, TypeVar

D = TypeVar("D")


class DoubleServer(ThreadingHTTPServer, Generic[D]):
    """The HTTP server; request handlers reach their double as `server.double`."""

    double: D
    # Handler threads must not keep a test process alive.
    daemon_threads = True


class ServedInThread:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._handler = handler
        self._server: DoubleServer[Self] | None = None
        self._thread: threading.Thread | None = None

    def start(self, port: int = 0) -> Self:
        """Serve on `port` (0: a free one)."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        server: DoubleServer[Self] = DoubleServer(("127.0.0.1", port), self._handler)
        server.double = self
        # A short poll interval keeps stop() quick.
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, with no trailing slash."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"
