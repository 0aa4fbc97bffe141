"""Who may talk to the viewer.

* Every request (pages, API, static files, live events) must be addressed to the host the viewer listens on:
  a web page that rebinds its own name to 127.0.0.1 (DNS rebinding) still sends its name in ``Host``.
* Requests that change state must come from the viewer's own pages: the same origin, and the per-server
  token those pages carry (another origin can neither read it nor, without CORS, send the header).
* A declared body over the limit is refused before it is read; bodies without a length are counted while read.
"""

from __future__ import annotations

import ipaddress
import secrets

from fastapi import HTTPException, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from replays.viewer.errors import error_response

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
TOKEN_HEADER = "x-glassbox-token"
MAX_BODY = 64_000

# Pages run only the viewer's own script files: no inline script or event handlers, so a value that escaped
# escaping still cannot run. ('unsafe-eval' only lets scripts already running evaluate strings, as browser
# automation driving the viewer does; viewer.js never does.) Nothing may frame the pages (clickjacking).
PAGE_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


def host_name(host: str) -> str:
    """How a host appears in a ``Host`` header: lower case, IPv6 in brackets."""
    host = host.strip().lower()
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            return f"[{host.strip('[]')}]"
    except ValueError:
        pass
    return host


def split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` -> (name, port); None when it is not that shape."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
    else:
        name, sep, port = value.partition(":")
        rest = sep + port
    if not name:
        return None
    if not rest:
        return name, None
    port_text = rest[1:]
    if not rest.startswith(":") or not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        return None
    return name, int(port_text)


def host_allowed(header: str | None, listen_host: str, server: tuple[str, int] | None) -> bool:
    """Is ``Host: header`` addressed to this viewer (a loopback name, its ``--host``, or the IP it was reached on)?"""
    if header is None:
        return False
    parsed = split_host(header)
    if parsed is None:
        return False
    name, port = parsed
    names = {*LOOPBACK_NAMES, host_name(listen_host)}
    local_port = None
    if server is not None:
        # The address this connection arrived on is an IP literal: a rebinding page cannot make a browser send it.
        names.add(host_name(server[0]))
        local_port = server[1]
    if name not in names:
        return False
    if local_port is None:
        return True
    return port == local_port or (port is None and local_port == 80)


class HostGuard:
    """ASGI middleware: refuse misaddressed requests (421) and oversize declared bodies (413); add security headers."""

    def __init__(self, app: ASGIApp, *, listen_host: str, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.listen_host = listen_host
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        server = scope.get("server")
        if not host_allowed(host, self.listen_host, tuple(server) if server else None):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            expected = ", ".join(f"{n}:{server[1]}" if server else n for n in LOOPBACK_NAMES)
            message = (
                f"this viewer answers only requests addressed to {expected} (or the host it was started with); "
                f"this one was addressed to {host!r:.80}"
            )
            await error_response(scope, headers.get("accept", ""), 421, message)(scope, receive, send)
            return
        length = headers.get("content-length")
        refusal: tuple[int, str] | None = None
        if length is not None and not (length.isascii() and length.isdigit()):
            refusal = (400, f"Content-Length {length!r:.40} is not a number")
        elif length is not None and int(length) > self.max_body:
            refusal = (413, f"request body of {int(length)} bytes is over the limit of {self.max_body} bytes")
        if refusal is not None:
            response = error_response(scope, headers.get("accept", ""), *refusal, headers={"connection": "close"})
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {k.lower() for k, _ in raw}
                extra = dict(SECURITY_HEADERS)
                extra.setdefault("content-security-policy", PAGE_CSP)
                raw += [(k.encode(), v.encode()) for k, v in extra.items() if k.encode() not in present]
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def check_write(request: Request, token: str) -> None:
    """Refuse a state change unless it comes from this viewer's own page (same origin) and carries its token."""
    expected = f"http://{request.headers.get('host', '')}"
    origin = request.headers.get("origin")
    fetch_site = request.headers.get("sec-fetch-site")
    referer = request.headers.get("referer")
    if origin is not None and origin != expected:
        raise HTTPException(403, f"cross-origin request refused: Origin {origin!r:.80} is not {expected}")
    if fetch_site is not None and fetch_site != "same-origin":
        raise HTTPException(403, f"cross-site request refused (Sec-Fetch-Site: {fetch_site:.40})")
    if origin is None and fetch_site is None and not (referer == expected or (referer or "").startswith(expected + "/")):
        raise HTTPException(
            403, f"request refused: send Origin: {expected} (changes are accepted only from the viewer's own pages)"
        )
    sent = request.headers.get(TOKEN_HEADER, "")
    if not sent or not secrets.compare_digest(sent.encode(), token.encode()):
        raise HTTPException(
            403,
            f"request refused: missing or wrong {TOKEN_HEADER} header (the viewer's pages carry "
            "the token in <meta name='glassbox-token'>)",
        )
