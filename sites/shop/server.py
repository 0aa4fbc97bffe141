"""Serve the shop on 127.0.0.1 in a background thread, with a fresh database per instance."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from sites.shop.app import create_app
from sites.shop.layout import layout_for_seed

DEFAULT_USERNAME = "admin"
DEFAULT_PASSWORD = "Xq7-tulip-4821"
_PREFIX = "glassbox-shop-"
_OWNED = re.compile(r"glassbox-shop-(\d+)-[A-Za-z0-9_]+")


def remove_stale_data_dirs() -> int:
    """Remove the temporary shop folders whose process is gone (killed before it could remove its own); returns
    how many. Only folders named with a pid, owned by this user, are considered: another user's are not ours."""
    removed = 0
    root = Path(tempfile.gettempdir())
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    for entry in entries:
        match = _OWNED.fullmatch(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            os.kill(int(match.group(1)), 0)
            continue  # its process is still there
        except ProcessLookupError:
            pass
        except (OSError, ValueError, OverflowError):
            continue  # not ours to judge (no permission to signal it, a pid out of range)
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += 1
    return removed


class ShopServer:
    """A running shop. Use as a context manager; ``base_url`` is set once it listens.

    ``port=0`` (the default) lets the OS pick a free port. Without ``data_dir`` the database and
    uploads live in a temporary folder removed on exit, so every instance starts fresh.
    """

    def __init__(
        self,
        *,
        layout_seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: Path | None = None,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
    ) -> None:
        self.layout = layout_for_seed(layout_seed)
        self.host = host
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir:
            self.data_dir = Path(data_dir)
        else:
            remove_stale_data_dirs()  # a run or eval worker killed with SIGKILL left its folder behind
            self._tmp = tempfile.TemporaryDirectory(prefix=f"{_PREFIX}{os.getpid()}-")
            self.data_dir = Path(self._tmp.name)
        self.app = create_app(data_dir=self.data_dir, layout=self.layout, username=username, password=password)
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="shop-server", daemon=True)
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the shop server is not started")
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> "ShopServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the shop server failed to start on {self.host}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the shop server did not start within {timeout:.0f} s")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, *, wait: bool = True) -> None:
        """Stop serving, close the database and remove its temporary folder. uvicorn takes 0.1-0.2 s to wind down;
        with ``wait=False`` that happens on a thread of its own (not a daemon: the process still waits for it at
        exit, so no folder is left behind), for a caller that no longer needs the site (an eval's episode)."""
        self._server.should_exit = True
        if wait:
            self._close()
        else:
            threading.Thread(target=self._close, name="shop-server-stop").start()

    def _close(self) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.app.state.db.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "ShopServer":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
