"""Run the fake on a real loopback port, in a background thread."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from types import TracebackType

import uvicorn

from services.fake_google.app import create_app
from services.fake_google.data import fake_env
from services.fake_google.state import FakeGoogle


def http_impl() -> str:
    """uvicorn's fastest available HTTP implementation."""
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket; binding here lets port 0 pick a free port we know before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP, and
    # without it every response pays a 40 ms Nagle/delayed-ACK stall.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def uvicorn_config(fake: FakeGoogle, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration the fake runs with."""
    return uvicorn.Config(
        create_app(fake),
        host=host,
        port=port,
        loop="asyncio",
        http=http_impl(),
        lifespan="off",
        log_level="warning",
        log_config=None,  # uvicorn's default would give the process's shared uvicorn loggers its own handlers
        access_log=False,
        server_header=False,
        date_header=False,
        backlog=4096,
        timeout_graceful_shutdown=1,
    )


class FakeGoogleServer:
    """A running fake Google: `.url`, `.fake`, `.env()`, `.stop()`; also a context manager."""

    def __init__(self, fake: FakeGoogle, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fake = fake
        self._sock = bind_socket(host, port)
        bound_port = self._sock.getsockname()[1]
        url_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{url_host}:{bound_port}"
        self._server = uvicorn.Server(uvicorn_config(fake, host, bound_port))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="fake-google", daemon=True
        )

    def start(self, timeout: float = 10.0) -> FakeGoogleServer:
        """Start serving and return once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"fake Google did not start on {self.url}")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()

    def env(self) -> dict[str, str]:
        """The environment variables that point the system at this fake."""
        return fake_env(self.url, self.fake.client_id, self.fake.client_secret)

    def __enter__(self) -> FakeGoogleServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_fake_google(host: str = "127.0.0.1", port: int = 0, fake: FakeGoogle | None = None) -> FakeGoogleServer:
    """Start a fake Google on `host:port` (0: any free port) in a daemon thread; returns once it accepts connections."""
    return FakeGoogleServer(fake or FakeGoogle(), host, port).start()
