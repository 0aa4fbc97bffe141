"""Serve the viewer with uvicorn: in the foreground (``glassbox view``) or on a thread beside a run."""

from __future__ import annotations

import errno
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from agent.approval import announce_viewer, withdraw_viewer
from replays.viewer.app import create_viewer


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, bound here rather than by uvicorn, so that a port in use (or an
    address not on this machine) is one clear OSError instead of uvicorn's log line and a timeout."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise OSError(f"{host} is not an address of this machine ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a just-closed viewer's port
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                f"port {port} is in use (another viewer?); choose another --port, or --port 0 for any free one"
            ) from None
        raise OSError(f"{exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


class ViewerServer:
    """The viewer on ``host:port`` (port 0: the OS picks one). 127.0.0.1 unless told otherwise."""

    def __init__(self, runs_dir: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.runs_dir = runs_dir
        self.app = create_viewer(runs_dir, host=host)
        self._announced: Path | None = None
        config = uvicorn.Config(
            self.app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self.port_asked = port
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    @property
    def token(self) -> str:
        """The per-server token the viewer's pages carry; a write must send it as ``X-Glassbox-Token``."""
        return str(self.app.state.token)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> "ViewerServer":
        sock = listen(self.host, self.port_asked)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="viewer", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the viewer could not listen on {self.host}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        # Runs writing into this runs dir ask a person here (agent.approval), even before a page is open.
        self._announced = announce_viewer(self.runs_dir, self.url)
        return self

    def stop(self) -> None:
        if self._announced is not None:
            withdraw_viewer(self._announced)
            self._announced = None
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "ViewerServer":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
