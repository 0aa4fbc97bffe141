"""Turn what a user types for a run into its folder: the path ``glassbox run`` prints, the run id, or a unique prefix.

    ref = resolve_run("runs/20261123-083700-publish-product-1a2b3c/", Path("runs"))
    ref.run_dir, ref.run_id, ref.runs_dir   # runs_dir is the folder's parent for a path

One resolver for every command that takes a run, so they all accept the same things and fail the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tools.errors import UsageError

RUN_FILE = "run.json"  # the file that makes a folder a run (tracer.store writes it when the run starts)
MAX_REF = 4096  # longer than any path the OS accepts
SHOWN_CANDIDATES = 20


class RunRef(BaseModel):
    """A resolved run: its folder, its id (the folder's name) and the runs directory it lives in."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    run_dir: Path
    runs_dir: Path
    by: Literal["path", "id", "prefix"]


class RunRefError(UsageError, ValueError):
    """The reference names no run, or several; the message says what was looked for (and the candidates)."""

    def __init__(self, message: str, candidates: list[str] | None = None) -> None:
        super().__init__(message)
        self.candidates = candidates or []


def looks_like_path(ref: str) -> bool:
    """A reference with a path separator (``runs/<id>``, ``./x``, ``/abs/x/``) or ``~``, ``.``, ``..`` is a folder."""
    seps = [os.sep] + ([os.altsep] if os.altsep else [])
    return any(s in ref for s in seps) or ref.startswith("~") or ref in (".", "..")


def resolve_run(ref: str, runs_dir: Path) -> RunRef:
    """The run ``ref`` names: a run folder path (anywhere), else a run id or unique id prefix in ``runs_dir``.

    A bare name that matches nothing in ``runs_dir`` but is a run folder in the current directory is taken as
    that folder (``cd runs; glassbox runs show <id>``).
    """
    if not ref or not ref.strip():
        raise RunRefError("the run reference is empty: give a run folder, a run id or a prefix of one")
    if "\x00" in ref or len(ref) > MAX_REF:
        raise RunRefError(f"{_short(ref)} is not a run folder, run id or prefix (NUL byte or too long)")
    if looks_like_path(ref):
        return _by_path(ref)
    if ref.startswith("."):
        # Hidden entries are temporary files and the index's companions, never runs.
        raise RunRefError(f"{ref!r} is not a run id: run ids do not start with '.'")
    found = _by_id(ref, runs_dir)
    if found is not None:
        return found
    if _is_run_folder(Path(ref)):
        return _by_path(ref)
    raise RunRefError(_not_found(ref, runs_dir))


def _by_path(ref: str) -> RunRef:
    path = Path(ref)  # Path() drops a trailing slash and "./" parts
    try:
        path = path.expanduser()
    except RuntimeError:  # no home directory to expand "~" to: take the name literally
        pass
    if not _is_run_folder(path):
        what = "is not a folder" if not _is_dir(path) else f"has no {RUN_FILE}"
        raise RunRefError(f"no run folder at {ref!r}: {path} {what} (a run folder holds {RUN_FILE})")
    if path.name in ("", ".", ".."):
        path = Path(os.path.abspath(path))  # "." or ".." inside a run folder: name it by its real name
    return RunRef(run_id=path.name, run_dir=path, runs_dir=path.parent, by="path")


def _by_id(ref: str, runs_dir: Path) -> RunRef | None:
    exact = runs_dir / ref
    if _is_run_folder(exact):
        return RunRef(run_id=ref, run_dir=exact, runs_dir=runs_dir, by="id")
    matches = sorted(name for name in _run_names(runs_dir) if name.startswith(ref))
    if len(matches) == 1:
        return RunRef(run_id=matches[0], run_dir=runs_dir / matches[0], runs_dir=runs_dir, by="prefix")
    if len(matches) > 1:
        shown = "\n".join(f"  {name}" for name in matches[:SHOWN_CANDIDATES])
        more = f"\n  ... and {len(matches) - SHOWN_CANDIDATES} more" if len(matches) > SHOWN_CANDIDATES else ""
        raise RunRefError(
            f"{ref!r} matches {len(matches)} runs in {runs_dir}; give more of the id:\n{shown}{more}", candidates=matches
        )
    return None


def _run_names(runs_dir: Path) -> list[str]:
    """Names of the run folders in ``runs_dir`` (plain listing: a prefix is matched as text, never as a glob)."""
    try:
        entries = list(os.scandir(runs_dir))
    except OSError:
        return []
    return [e.name for e in entries if not e.name.startswith(".") and _is_run_folder(Path(e.path))]


def _not_found(ref: str, runs_dir: Path) -> str:
    if not _is_dir(runs_dir):
        return (
            f"no run {ref!r}: the runs directory {runs_dir} does not exist "
            f"(pass --runs-dir, or the run's folder as printed by `glassbox run`, e.g. runs/<id>)"
        )
    count = len(_run_names(runs_dir))
    return (
        f"no run {ref!r} in {runs_dir}: looked for a run id or a prefix of one among its {count} run(s), "
        f"and for a run folder ./{ref}"
    )


def _is_run_folder(path: Path) -> bool:
    try:
        return (path / RUN_FILE).is_file()
    except (OSError, ValueError):
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _short(ref: str) -> str:
    text = repr(ref)
    return text if len(text) <= 80 else text[:77] + "..."
