"""Find the system Chromium (Debian's ``chromium``); Glassbox never downloads a browser."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tools.errors import UsageError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Without a window, Debian's old headless shell (apt-get install chromium-headless-shell) draws the same pages with
# less of the browser around them: a script run's steps about 15 % faster, an eval's episodes about 35 % (bench/).
HEADLESS_CANDIDATES = ("chromium-headless-shell",)

# Flags that keep Chromium quiet and working on machines with no network access.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


class ChromiumNotFound(UsageError, RuntimeError):
    """No Chromium binary could be found."""


def find_chromium(*, headless: bool = False) -> Path:
    """Return the Chromium executable: ``$GLASSBOX_CHROMIUM``, else (``headless``) the headless shell when
    installed, else the first of :data:`CANDIDATES` on PATH."""
    explicit = os.environ.get("GLASSBOX_CHROMIUM")
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ChromiumNotFound(f"GLASSBOX_CHROMIUM={explicit} is not an executable file")
    for name in (HEADLESS_CANDIDATES if headless else ()) + CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ChromiumNotFound(
        "No Chromium found (looked for " + ", ".join(CANDIDATES) + " on PATH). "
        "Install it with `sudo apt-get install chromium fonts-noto-cjk fonts-liberation` "
        "or point GLASSBOX_CHROMIUM at a Chromium binary."
    )
