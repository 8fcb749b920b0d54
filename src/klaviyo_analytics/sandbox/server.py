"""Run the sandbox over real HTTP on 127.0.0.1, in a background thread (tests, demo)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn

from klaviyo_analytics.errors import KlaviyoAnalyticsError
from klaviyo_analytics.sandbox.app import create_sandbox_app
from klaviyo_analytics.sandbox.config import SandboxConfig
from klaviyo_analytics.sandbox.generator import StoreGenerator
from klaviyo_analytics.sandbox.state import SandboxState

logger = logging.getLogger(__name__)


class SandboxStartError(KlaviyoAnalyticsError):
    """The sandbox server did not come up."""


class SandboxServer:
    """A sandbox on a free (or given) 127.0.0.1 port, served by uvicorn in a thread.

    Use as a context manager, or call `start()` and `stop()`. `generator` is the store the
    server answers from, for expected counts (`count_events`, ...).
    """

    def __init__(self, config: SandboxConfig | None = None, port: int = 0) -> None:
        """Build the store and the app; nothing listens until `start()`."""
        self.config = config or SandboxConfig()
        self.generator = StoreGenerator(self.config.store)
        self.app = create_sandbox_app(self.config, self.generator)
        self.state: SandboxState = self.app.state.sandbox
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def api_key(self) -> str:
        """The key the server accepts."""
        return self.config.api_key

    @property
    def port(self) -> int:
        """The port it listens on; raise SandboxStartError before `start()`."""
        if self._socket is None:
            raise SandboxStartError("the sandbox server is not started")
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`; raise SandboxStartError before `start()`."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> SandboxServer:
        """Listen and serve in a background thread; raise SandboxStartError if it fails."""
        if self._server is not None:
            return self
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on such sockets, and without
        # it Nagle's algorithm meets delayed ACKs and every response takes ~40 ms.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        self._socket = sock
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off",
            timeout_graceful_shutdown=1, timeout_keep_alive=30,
        )  # fmt: skip
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="klaviyo-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise SandboxStartError("the sandbox server did not start")
            time.sleep(0.01)
        logger.info("sandbox listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
