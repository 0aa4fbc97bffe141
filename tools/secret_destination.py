"""Where typed keys would go in a browser page, and whether a task's secret may go there.

A secret is typed only into a document of one of the task's origins (the target's and ``allowed_origins``; a
local task's own ``file:`` pages), as a password manager fills a password only on its site. Otherwise a page
could lure the agent elsewhere (a link, a popup followed, a cross-origin frame holding a look-alike form) and
have it type the password there: the secret would leave the machine without any file or log showing it.

The keys go to the focused element of the focused frame. It is found from the top: in each frame the document's
focused element, and when that is a frame element, the frame inside it. A frame's origin is read from its URL as
the browser reports it (Playwright's ``frame.url``), not from the page's scripts, and only a frame of an allowed
origin is asked which element holds its focus: the first frame of another origin on the way ends the search (and
the secret is refused), so such a frame has no say in the answer.

    allowed = lambda url, depth: frame_refusal(url, depth, origins, local_pages=False) is None
    chain, hidden = key_frames(page, allowed)                   # the main frame first
    problem = refusal([frame.url for frame in chain], origins, local_pages=False)  # None: the secret may be typed
    if problem is None and hidden:                              # the focus out of sight: no frame of another origin
        problem = hidden_focus_refusal([f.url for f in chain[-1].child_frames], len(chain), origins, local_pages=False)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

__all__ = ["MAX_FRAME_DEPTH", "frame_refusal", "hidden_focus_refusal", "key_frames", "refusal"]

MAX_FRAME_DEPTH = 16  # nested frames followed at most; deeper is refused (no real form is that deep)

# The focused element of this document, through open shadow roots: a frame element when the focus is inside it;
# else whether it is a field the keys can go into (not a field: the focus may be in a closed shadow root, out of sight).
_FOCUSED_FRAME_ELEMENT = """() => {
  let element = document.activeElement;
  while (element && element.shadowRoot && element.shadowRoot.activeElement) element = element.shadowRoot.activeElement;
  if (element && (element.tagName === 'IFRAME' || element.tagName === 'FRAME')) return element;
  return !!element && (element.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(element.tagName));
}"""


def key_frames(page: Any, allowed: Callable[[str, int], bool] = lambda url, depth: True) -> tuple[list[Any], bool]:
    """The frames from the main frame down to the one that holds the focus (the keys go to its focused
    element), or down to the first one ``allowed(url, depth)`` refuses: that frame is never asked (a frame of
    another site could hang the question); and whether the last frame's focused element is out of sight (neither a
    field nor a frame: a closed shadow root may hold the real one). Raises what Playwright raised when a frame could
    not be asked."""
    chain = [page.main_frame]
    while len(chain) <= MAX_FRAME_DEPTH and allowed(chain[-1].url, len(chain) - 1):
        handle = chain[-1].evaluate_handle(_FOCUSED_FRAME_ELEMENT)
        element = handle.as_element()
        child = element.content_frame() if element is not None else None
        field = element is None and bool(handle.json_value())
        handle.dispose()
        if child is None:
            return chain, element is None and not field
        chain.append(child)
    return chain, False


def refusal(chain_urls: list[str], allowed_origins: list[str], *, local_pages: bool) -> str | None:
    """Why a secret must not be typed into the last frame of ``chain_urls`` (the main frame's URL first), or None
    when every frame on the way is of an allowed origin (:func:`frame_refusal`)."""
    if len(chain_urls) > MAX_FRAME_DEPTH:
        return f"the focus is more than {MAX_FRAME_DEPTH} frames deep"
    for depth, url in enumerate(chain_urls):
        problem = frame_refusal(url, depth, allowed_origins, local_pages=local_pages)
        if problem is not None:
            return problem
    return None


def hidden_focus_refusal(child_urls: list[str], depth: int, allowed_origins: list[str], *, local_pages: bool) -> str | None:
    """Why a secret must not be typed where the focus is out of sight (see :func:`key_frames`) in a frame whose own
    frames are at ``child_urls`` (``depth``: theirs): any of them of another origin may be where the keys go."""
    for url in child_urls:
        if frame_refusal(url, depth, allowed_origins, local_pages=local_pages) is not None:
            return (
                f"the focus is on an element that is not a field, and {_where(url, depth)} may be behind it "
                "(in a closed shadow root), which is not one of the task's origins"
            )
    return None


def frame_refusal(url: str, depth: int, allowed_origins: list[str], *, local_pages: bool) -> str | None:
    """Why the frame at ``url`` (``depth`` 0: the page itself) must not receive a secret, or None. ``about:blank``
    and ``about:srcdoc`` frames are their parent's (a frame of the task's page wrote them); ``file:`` pages are the
    task's own only for a local task."""
    where = _where(url, depth)
    scheme = urlsplit(url).scheme.lower()
    if scheme == "about":
        return f"the keys would go to {where}, a page of no origin of the task's" if depth == 0 else None
    if scheme == "file":
        return None if local_pages else f"the keys would go to {where}: a local file, and this task's pages are on the web"
    if _origin_of(url) not in allowed_origins:
        allowed = ", ".join(allowed_origins) or "none"
        return f"the keys would go to {where}, which is not one of the task's origins ({allowed})"
    return None


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() == "blob":  # blob:https://host/uuid belongs to the origin that made it
        return _origin_of(url[len("blob:") :])
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return "null"  # data:, javascript:, ...: an opaque origin, never one of the task's
    return f"{parts.scheme}://{parts.netloc}".lower()


def _where(url: str, depth: int) -> str:
    shown = _origin_of(url) if urlsplit(url).scheme.lower() in ("http", "https", "blob") else url[:200]
    return f"the page {shown}" if depth == 0 else f"a frame of {shown} inside the page"
