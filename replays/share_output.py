"""Where a shared export goes: check the output path up front (a clear usage error, not a traceback) and
write it whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

from tools.errors import UsageError
from tracer.evals import PLAN_FILE
from tracer.index import INDEX_FILE
from tracer.run_files import RUN_FILE


class OutputPathError(UsageError, ValueError):
    """--out names a file that cannot be written (its folder is missing, it is a folder)."""


def check_out_path(out: Path, *, example: str = "run.html", folder_made: bool = False) -> None:
    """Raise :class:`OutputPathError` unless ``out`` can be written: not a folder, in a writable folder that exists
    (``folder_made``: a missing folder is fine, the export makes it)."""
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise OutputPathError(f"--out {out} is a folder: give a file name, e.g. {out / example}")
    _not_in_a_recording(out)
    if folder_made:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent  # the nearest folder that exists: where the missing ones would be made
    if parent.exists() and not parent.is_dir():
        raise OutputPathError(f"--out {out}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise OutputPathError(f"--out {out}: the folder {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"--out {out}: the folder {parent} is not writable")


def _not_in_a_recording(out: Path) -> None:
    """An export never writes into what Glassbox recorded: a run folder (``--out runs/RUN/labels.jsonl`` would
    replace the labels), an eval folder, or over a runs index."""
    resolved = out.resolve()
    if resolved.name == INDEX_FILE:
        raise OutputPathError(f"--out {out} would replace a runs index: write the export somewhere else")
    for folder in resolved.parents:
        if (folder / RUN_FILE).is_file() or (folder / PLAN_FILE).is_file():
            kind = "run" if (folder / RUN_FILE).is_file() else "eval"
            raise OutputPathError(
                f"--out {out} is inside the {kind} folder {folder}: an export never writes into a recording; "
                "write it somewhere else"
            )


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
