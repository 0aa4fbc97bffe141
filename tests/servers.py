"""Real HTTP servers for tests: on 127.0.0.1 at an OS-assigned port, served by a daemon thread.

    with LocalServer(Handler) as server:  # or server = LocalServer(Handler).start() ... server.close()
        get(server.url + "/page")

A test double subclasses :class:`LocalServer`, defining its handler (a :class:`QuietHandler`) in ``__init__`` to
reach its own state; a page server passes its handler class as it is.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (pytest shows a test's output) and answers in one call."""

    def reply(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        self.reply(status, json.dumps(payload).encode(), "application/json", headers)

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def log_message(self, *args: Any) -> None:
        pass


class LocalServer:
    """A ``ThreadingHTTPServer`` with ``handler``; ``url`` is its address plus ``path``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, path: str = "") -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def one_page(html: bytes) -> LocalServer:
    """A server answering every GET with ``html`` (a test's page): ``with one_page(PAGE) as server: ...``."""

    class _Page(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.reply(200, html, "text/html; charset=utf-8")

    return LocalServer(_Page)
