"""Where a shared export goes: check the output path up front (a clear usage error, not a traceback) and
write it whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

from tools.errors import UsageError


class OutputPathError(UsageError, ValueError):
    """--out names a file that cannot be written (its folder is missing, it is a folder)."""


def check_out_path(out: Path, *, example: str = "run.html", folder_made: bool = False) -> None:
    """Raise :class:`OutputPathError` unless ``out`` can be written: not a folder, in a writable folder that exists
    (``folder_made``: a missing folder is fine, the export makes it)."""
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise OutputPathError(f"--out {out} is a folder: give a file name, e.g. {out / example}")
    if folder_made:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent  # the nearest folder that exists: where the missing ones would be made
    if not parent.is_dir():
        raise OutputPathError(f"--out {out}: the folder {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"--out {out}: the folder {parent} is not writable")


def write_atomically(out: Path, data: bytes) -> None:
    """Write ``data`` to ``out`` through a temporary file beside it, so a failed export leaves nothing half-written."""
    check_out_path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
