"""SQLite index (WAL) over runs, steps and labels, so thousands of runs list without reading folders.

The run folders are the truth; the index is a cache that is rebuilt from them when missing or stale
(:meth:`RunIndex.sync`). Labels live in each run folder (``labels.jsonl``, see :mod:`tracer.labels`) and are
mirrored here. Many processes may write at once: short transactions, a busy timeout, and a retry when the
database is locked.

An index that cannot be used (not a database, truncated, a directory in its place, another schema) is never
fatal: it is moved aside (``index.sqlite3.corrupt-<time>``, never deleted) and rebuilt from the run folders,
with a warning. Where no index can be written at all (a read-only runs dir, a full disk) the index lives in
memory for this process, built from the folders.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from tools.errors import HarnessError
from tracer.labels import (
    LABELS_FILE,
    LabelAdded,
    LabelUndone,
    append_label_event,
    current_labels,
    read_label_events,
)
from tracer.logs import get_logger
from tracer.run_files import RUN_FILE, STEPS_FILE, process_alive, read_run, read_steps, stale_temp_files
from tracer.schema import RunRecord, RunStatus, StepRecord

INDEX_FILE = "index.sqlite3"
LOCK_FILE = ".index.lock"
# PRAGMA user_version. 0: labels lived only in the index (older Glassbox); 2: labels live in the run folders;
# 3: each run's row carries its lowest step confidence (filled from the steps table when an index is upgraded);
# 4: what each finished run's files looked like when indexed (run_files), so a folder edited since is indexed again.
INDEX_VERSION = 4
_T = TypeVar("_T")
log = get_logger("glassbox.index")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    task_name TEXT NOT NULL,
    policy TEXT NOT NULL,
    model TEXT,
    status TEXT NOT NULL,
    end_reason TEXT,
    agent_verdict TEXT,
    checks_passed INTEGER,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    duration_s REAL,
    steps INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    layout_seed INTEGER,
    parent_run TEXT,
    pid INTEGER,
    host TEXT,
    min_confidence REAL,
    min_confidence_step INTEGER
)""",
    "CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at)",
    "CREATE INDEX IF NOT EXISTS runs_confidence ON runs (min_confidence)",
    "CREATE INDEX IF NOT EXISTS runs_task ON runs (task_name)",
    "CREATE INDEX IF NOT EXISTS runs_status ON runs (status)",
    """CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    action TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    confidence REAL,
    url TEXT,
    started_at TEXT NOT NULL,
    PRIMARY KEY (run_id, idx)
)""",
    # A mirror of the run folders' labels.jsonl; ids are unique per runs dir, (run_id, id) keeps copied folders apart.
    """CREATE TABLE IF NOT EXISTS labels (
    run_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    correction TEXT,
    note TEXT,
    created_at TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, id)
)""",
    "CREATE INDEX IF NOT EXISTS labels_id ON labels (id)",
    # How much of each labels.jsonl the mirror holds: a size that differs means the mirror is stale.
    "CREATE TABLE IF NOT EXISTS label_files (run_id TEXT PRIMARY KEY, size INTEGER NOT NULL)",
    # run.json's and steps.jsonl's sizes and times when a finished run was indexed: a change means an edit by hand.
    "CREATE TABLE IF NOT EXISTS run_files (run_id TEXT PRIMARY KEY, signature TEXT NOT NULL)",
)
_COLUMNS = {
    "runs": (
        "run_id",
        "task_name",
        "policy",
        "model",
        "status",
        "end_reason",
        "agent_verdict",
        "checks_passed",
        "started_at",
        "ended_at",
        "duration_s",
        "steps",
        "errors",
        "layout_seed",
        "parent_run",
        "pid",
        "host",
        "min_confidence",
        "min_confidence_step",
    ),
    "steps": ("run_id", "idx", "action", "outcome", "error", "confidence", "url", "started_at"),
    "labels": ("run_id", "id", "idx", "verdict", "correction", "note", "created_at", "deleted"),
    "label_files": ("run_id", "size"),
    "run_files": ("run_id", "signature"),
}
# Columns added since: an index with these older columns is upgraded in place (ALTER TABLE ... ADD COLUMN).
_ADDED_COLUMNS = {"runs": (("min_confidence", "REAL"), ("min_confidence_step", "INTEGER"))}
_OLDER_COLUMNS = {table: _COLUMNS[table][: -len(added)] for table, added in _ADDED_COLUMNS.items()}
# A run's lowest known step confidence and its step, from the steps table (the index's copy of steps.jsonl).
_MIN_CONFIDENCE_SQL = (
    "(SELECT MIN(confidence) FROM steps WHERE steps.run_id = runs.run_id), "
    "(SELECT idx FROM steps WHERE steps.run_id = runs.run_id AND confidence IS NOT NULL ORDER BY confidence, idx LIMIT 1)"
)
_SET_MIN_CONFIDENCE = f"UPDATE runs SET (min_confidence, min_confidence_step) = ({_MIN_CONFIDENCE_SQL})"
_SET_RUN_PROGRESS = (
    "UPDATE runs SET (steps, errors, min_confidence, min_confidence_step) = ("
    "MAX(steps, (SELECT COUNT(*) FROM steps WHERE steps.run_id = runs.run_id)), "
    "MAX(errors, (SELECT COUNT(*) FROM steps WHERE steps.run_id = runs.run_id AND outcome = 'error')), "
    f"{_MIN_CONFIDENCE_SQL})"
)
RunOrder = Literal["newest", "least_confident"]
_ORDER_BY: dict[str, str] = {
    "newest": "started_at DESC, run_id DESC",
    # Runs with no known confidence (script policies) last; ties newest first.
    "least_confident": "min_confidence IS NULL, min_confidence ASC, started_at DESC, run_id DESC",
}
# Created on first use (not part of the checked schema): indexes written before evals existed work unchanged.
_EVALS_TABLE = (
    "CREATE TABLE IF NOT EXISTS evals (eval_id TEXT PRIMARY KEY, suite TEXT NOT NULL, updated_at TEXT NOT NULL, summary TEXT)"
)
# What SQLite says about a file that is not (or no longer) a usable index of ours.
_UNUSABLE = (
    "not a database",
    "malformed",
    "corrupt",
    "no such table",
    "no such column",
    "has no column",
    "columns but",
    "unable to open",
    "disk i/o error",
)


class UnusableIndex(HarnessError, sqlite3.DatabaseError):
    """The file is a database, but not an index this code can use (another schema)."""


class RunRow(BaseModel):
    """One run as the index lists it."""

    run_id: str
    task_name: str
    policy: str
    model: str | None
    status: RunStatus
    end_reason: str | None
    agent_verdict: str | None
    checks_passed: bool | None
    started_at: datetime
    ended_at: datetime | None
    duration_s: float | None
    steps: int
    errors: int
    layout_seed: int | None
    parent_run: str | None
    min_confidence: float | None = None  # the lowest known step confidence (None: no step had one)
    min_confidence_step: int | None = None


# How long a statement waits for another writer's lock, and how long one operation keeps trying in all: writers
# hold the lock for milliseconds (a first sync of many runs for a few seconds). Past that, another program holds
# it (a `sqlite3` shell in a transaction, a backup): this process goes on from the folders (an index in memory).
BUSY_TIMEOUT_S = 2.0
LOCKED_GIVE_UP_S = 15.0
LOCKED = "it is locked by another program (a sqlite3 shell or a backup holding a transaction?)"


class RunIndex:
    """The index of one runs directory. Cheap to open; one connection per instance and thread."""

    def __init__(self, runs_dir: Path) -> None:
        runs_dir.mkdir(parents=True, exist_ok=True)
        self.runs_dir = runs_dir
        self.path = runs_dir / INDEX_FILE
        self.in_memory = False
        self._recovering = False
        self.unreadable: list[tuple[str, str]] = []  # (run id, why): run folders the last sync could not read
        self._conn: sqlite3.Connection
        try:
            self._conn = self._open_file()
        except sqlite3.DatabaseError as exc:
            if _is_busy(exc):
                self._use_memory(LOCKED)  # a run, a listing, the viewer go on; the file is synced again later
            elif _is_unusable(exc):
                self._recover(str(exc))
            else:  # read-only, full disk: keep working from the folders
                self._use_memory(str(exc))

    def close(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error:
            pass

    # -- writing ----------------------------------------------------------------------------------
    def upsert_run(self, run: RunRecord) -> None:
        self._run(lambda conn: _upsert_run(conn, run))

    def add_step(self, run_id: str, step: StepRecord) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _step_values(run_id, step))
            # The run's row follows its steps while it runs (the runs page refreshes from it).
            conn.execute(_SET_RUN_PROGRESS + " WHERE run_id = ?", (run_id,))

        self._run(lambda conn: _transaction(conn, tx))

    def remove_run(self, run_id: str) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            for table in ("runs", "steps", "labels", "label_files", "run_files"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

        self._run(lambda conn: _transaction(conn, tx))

    def mirror_labels(self, run_dir: Path) -> None:
        """Make the index's labels of ``run_dir`` those of its ``labels.jsonl`` (the truth)."""
        self._run(lambda conn: _transaction(conn, lambda c: _mirror_labels(c, run_dir)))

    def refresh_labels(self, run_id: str | None = None) -> None:
        """Mirror the labels files that changed since they were mirrored (another process appended, a crash
        came between the append and the mirror): one ``stat`` per run."""
        mirrored = {r[0]: r[1] for r in self._run(lambda c: c.execute("SELECT run_id, size FROM label_files").fetchall())}
        if run_id is not None and (run_id in ("", ".", "..") or "/" in run_id or "\\" in run_id):
            return  # not a folder name of this runs dir
        dirs = [self.runs_dir / run_id] if run_id else _entries(self.runs_dir)
        for run_dir in dirs:
            size = _size(run_dir / LABELS_FILE)
            if size != mirrored.get(run_dir.name, 0) and _is_file(run_dir / RUN_FILE):
                self.mirror_labels(run_dir)

    def label_runs(self, label_id: int) -> list[tuple[str, bool]]:
        """The runs holding label ``label_id`` (one, unless a run folder was copied) and whether it is undone."""
        rows = self._run(lambda c: c.execute("SELECT run_id, deleted FROM labels WHERE id = ?", (label_id,)).fetchall())
        return [(r[0], bool(r[1])) for r in rows]

    # -- evaluations (glassbox eval): one summary per eval, kept here for the viewer -----------------
    def upsert_eval(self, eval_id: str, suite: str, summary: dict[str, Any]) -> None:
        """Keep (replace) the summary of eval ``eval_id``; the eval's folder (``evals/<id>/``) is the truth."""

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(_EVALS_TABLE)
            conn.execute(
                "INSERT OR REPLACE INTO evals VALUES (?, ?, ?, ?)",
                (eval_id, suite, datetime.now(timezone.utc).isoformat(), json.dumps(summary)),
            )

        self._run(lambda conn: _transaction(conn, tx))

    def evals(self) -> list[dict[str, Any]]:
        """Every eval's summary, newest update first: {eval_id, suite, updated_at, summary}."""

        def query(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            conn.execute(_EVALS_TABLE)  # an index written before evals existed has no such table yet
            return conn.execute("SELECT * FROM evals ORDER BY updated_at DESC").fetchall()

        result = []
        for row in self._run(query):
            try:
                summary = json.loads(row["summary"])
            except ValueError:
                summary = None
            result.append({**dict(row), "summary": summary})
        return result

    # -- reading ----------------------------------------------------------------------------------
    def runs(
        self,
        *,
        task: str | None = None,
        status: str | None = None,
        policy: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        search: str | None = None,
        order: RunOrder = "newest",
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunRow]:
        """Runs, newest first (or ``least_confident`` first), filtered. A ``running`` run whose process is gone
        lists as interrupted, and is re-read from its folder first (a kill can leave the index a step behind the folder)."""
        where, args = [], []
        for column, value in (("task_name", task), ("policy", policy)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if status == RunStatus.interrupted.value:
            where.append("status IN ('interrupted', 'running')")
        elif status:
            where.append("status = ?")
            args.append(status)
        if since:
            where.append("started_at >= ?")
            args.append(since.isoformat())
        if until:
            where.append("started_at < ?")
            args.append(until.isoformat())
        if search:
            where.append("(run_id LIKE ? OR task_name LIKE ? OR end_reason LIKE ?)")
            args += [f"%{search}%"] * 3
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        if order not in _ORDER_BY:
            raise ValueError(f"unknown order {order!r}; use {' or '.join(_ORDER_BY)}")
        sql += f" ORDER BY {_ORDER_BY[order]} LIMIT ? OFFSET ?"

        def query() -> list[sqlite3.Row]:
            return self._run(lambda c: c.execute(sql, (*args, limit, offset)).fetchall())

        rows = query()
        dead = [r["run_id"] for r in rows if r["status"] == RunStatus.running.value and not process_alive(r["pid"], r["host"])]
        if dead:
            for run_id in dead:
                self._index_folder(self.runs_dir / run_id)
            rows = query()
        result = [self._row(r) for r in rows]
        if status == RunStatus.interrupted.value:
            result = [r for r in result if r.status is RunStatus.interrupted]
        elif status == RunStatus.running.value:
            result = [r for r in result if r.status is RunStatus.running]
        return result

    def distinct(self, column: str) -> list[str]:
        """Distinct values of ``task_name`` or ``policy``, for filter menus."""
        if column not in ("task_name", "policy"):
            raise ValueError(f"cannot list distinct {column!r}")
        return [r[0] for r in self._run(lambda c: c.execute(f"SELECT DISTINCT {column} FROM runs ORDER BY 1").fetchall())]

    def count(self) -> int:
        return int(self._run(lambda c: c.execute("SELECT COUNT(*) FROM runs").fetchone())[0])

    def branches(self, run_id: str, limit: int = 50) -> list[RunRow]:
        """The runs replayed, resumed or forked from ``run_id`` (``parent_run``), oldest first."""
        sql = "SELECT * FROM runs WHERE parent_run = ? ORDER BY started_at, run_id LIMIT ?"
        return [self._row(r) for r in self._run(lambda c: c.execute(sql, (run_id, limit)).fetchall())]

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._run(lambda c: c.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY idx", (run_id,)).fetchall())
        return [dict(r) for r in rows]

    def labels(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Labels not undone, in the order they were given (ids grow with time). Only labels mirrored from a run
        folder: those an older index held for a run folder that is gone stay in the table, unlisted."""
        sql = (
            "SELECT * FROM labels WHERE deleted = 0 AND run_id IN (SELECT run_id FROM label_files)"
            + (" AND run_id = ?" if run_id else "")
            + " ORDER BY id, run_id"
        )
        rows = self._run(lambda c: c.execute(sql, (run_id,) if run_id else ()).fetchall())
        result = []
        for r in rows:
            try:
                correction = json.loads(r["correction"]) if r["correction"] else None
            except ValueError:
                correction = None
            result.append({**dict(r), "correction": correction})
        return result

    def sync(self) -> int:
        """Index every run folder missing from the index (or still running there); mirror changed labels files;
        drop runs whose folder is gone. Returns how many runs were (re)indexed."""
        known = {r[0]: r[1] for r in self._run(lambda c: c.execute("SELECT run_id, status FROM runs").fetchall())}
        mirrored = {r[0]: r[1] for r in self._run(lambda c: c.execute("SELECT run_id, size FROM label_files").fetchall())}
        signed = {r[0]: r[1] for r in self._run(lambda c: c.execute("SELECT run_id, signature FROM run_files").fetchall())}
        present: set[str] = set()
        done = 0
        self.unreadable = []
        for run_dir in _entries(self.runs_dir):
            if not _is_file(run_dir / RUN_FILE):
                continue
            present.add(run_dir.name)
            status = known.get(run_dir.name, RunStatus.running.value)
            # A finished run is indexed again when its files changed since (edited by hand): two stats a run.
            if status == RunStatus.running.value or signed.get(run_dir.name) != _signature(run_dir):
                done += self._index_folder(run_dir)
            if _size(run_dir / LABELS_FILE) != mirrored.get(run_dir.name, 0):
                self.mirror_labels(run_dir)
        for run_id in (set(known) | set(mirrored)) - present:
            if not _is_file(self.runs_dir / run_id / RUN_FILE):
                self.remove_run(run_id)  # the folder was deleted by hand
        return done

    # -- opening and recovering -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn

    def _open_file(self) -> sqlite3.Connection:
        if self.path.exists() and not self.path.is_file():
            raise sqlite3.OperationalError(f"unable to open database file: {self.path} is not a regular file")
        conn = self._connect()
        try:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            # Checked before anything is written: a file that is not ours is moved aside exactly as it was.
            current = int(_retry(lambda: conn.execute("PRAGMA user_version").fetchone())[0]) >= INDEX_VERSION
            _check_schema(
                conn,
                ("runs", "steps", "labels", "label_files", "run_files") if current else ("runs", "steps"),
                missing_ok=not current,
                older_ok=not current,
            )
            _retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
            conn.execute("PRAGMA synchronous=NORMAL")
            if not current:
                _retry(lambda: _transaction(conn, lambda c: self._upgrade(c)))
                _check_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Bring an older (or new, empty) index to this version, inside one write transaction. Labels that lived
        only in the index are written to their run folders first: nothing a person labelled is lost."""
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version >= INDEX_VERSION:
            return  # another process upgraded it while this one waited for the lock
        if version == 3:  # only the run_files table is new: the labels mirror and everything else stay as they are
            _check_schema(conn, ("runs", "steps", "labels", "label_files"))
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {INDEX_VERSION}")
            return
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in ("runs", "steps"):
            if table in tables:
                _check_table(conn, table, older_ok=True)
        if "runs" in tables and tuple(r[1] for r in conn.execute("PRAGMA table_info(runs)")) == _OLDER_COLUMNS["runs"]:
            for column, kind in _ADDED_COLUMNS["runs"]:
                conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
        migrated: set[str] = set()
        orphans: list[tuple[str, LabelAdded, bool]] = []
        if "labels" in tables:
            migrated, orphans = self._restore_labels(_old_labels(conn), kept_in="the runs index only")
            conn.execute("DROP TABLE labels")
            conn.execute("DROP INDEX IF EXISTS labels_step")
        for statement in _SCHEMA:
            conn.execute(statement)
        for run_id in migrated:
            _mirror_labels(conn, self.runs_dir / run_id)
        conn.executemany(
            "INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    label.id,
                    label.step,
                    label.verdict,
                    json.dumps(label.correction) if label.correction else None,
                    label.note,
                    label.created_at.isoformat(),
                    int(deleted),
                )
                for run_id, label, deleted in orphans
            ],
        )  # a run folder that is gone: its labels are not dropped with the old table
        conn.execute(_SET_MIN_CONFIDENCE)  # runs indexed before the column existed
        conn.execute(f"PRAGMA user_version = {INDEX_VERSION}")

    def _restore_labels(
        self,
        rows: list[tuple[str, LabelAdded, bool]],
        *,
        kept_in: str,
    ) -> tuple[set[str], list[tuple[str, LabelAdded, bool]]]:
        """Write labels found in an index (old or moved aside) into their run folders, unless already there.
        Returns the runs written to and the labels whose run folder is gone (they stay in ``kept_in``)."""
        by_run: dict[str, list[tuple[LabelAdded, bool]]] = {}
        for run_id, label, deleted in rows:
            by_run.setdefault(run_id, []).append((label, deleted))
        written: set[str] = set()
        orphans: list[tuple[str, LabelAdded, bool]] = []
        for run_id, labels in by_run.items():
            run_dir = self.runs_dir / run_id
            if run_id in ("", ".", "..") or "/" in run_id or "\\" in run_id or not _is_file(run_dir / RUN_FILE):
                _warn(
                    f"{len(labels)} label(s) in the runs index belong to run {run_id!r}, whose folder is not in "
                    f"{self.runs_dir}; they stay in {kept_in}"
                )
                orphans += [(run_id, label, deleted) for label, deleted in labels]
                continue
            have = {c.label.id for c in current_labels(read_label_events(run_dir)[0])}
            for label, deleted in labels:
                if label.id in have:
                    continue
                append_label_event(run_dir, label)
                if deleted:
                    append_label_event(run_dir, LabelUndone(id=label.id, at=datetime.now(timezone.utc)))
                written.add(run_id)
        return written, orphans

    def _recover(self, reason: str) -> None:
        """Move the unusable index aside and rebuild it from the run folders (one process at a time)."""
        if self._recovering:
            raise sqlite3.DatabaseError(reason)
        self._recovering = True
        try:
            if hasattr(self, "_conn"):
                self.close()
            with _exclusive(self.runs_dir / LOCK_FILE):
                try:
                    # Another process may have rebuilt it already, or only this connection was stale.
                    self._conn = self._open_file()
                    if self._conn.execute("PRAGMA quick_check").fetchone()[0] == "ok":
                        return
                    self.close()
                except sqlite3.DatabaseError as exc:
                    if hasattr(self, "_conn"):
                        self.close()
                    if _is_busy(exc):
                        raise
                aside = self._move_aside()
                if aside is None:
                    self._use_memory(f"{reason}; it could not be moved aside")
                    return
                salvaged = _salvage_labels(aside)
                try:
                    self._conn = self._open_file()
                    self._restore_labels(salvaged, kept_in=aside.name)
                    count = self._rebuild()
                except sqlite3.DatabaseError as exc:
                    self._use_memory(f"{reason}; a new index could not be written ({exc})")
                    return
            _warn(
                f"the runs index {self.path} could not be used ({reason}); it was moved to {aside.name} and rebuilt "
                f"from {count} run folder(s)"
            )
        finally:
            self._recovering = False

    def _use_memory(self, reason: str) -> None:
        """Index the folders in memory for this process: everything lists and opens, nothing is lost."""
        self._recovering = True
        try:
            if hasattr(self, "_conn"):
                self.close()
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            _transaction(conn, lambda c: [c.execute(s) for s in _SCHEMA])
            self._conn, self.in_memory = conn, True
            count = self._rebuild()
        finally:
            self._recovering = False
        _warn(f"the runs index {self.path} cannot be used ({reason}); using an index in memory built from {count} run folder(s)")

    def _rebuild(self) -> int:
        self.sync()  # indexing a finished run's folder also removes its stale temporary files
        return sum(1 for d in _entries(self.runs_dir) if _is_file(d / RUN_FILE))

    def _move_aside(self) -> Path | None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path.with_name(f"{INDEX_FILE}.corrupt-{stamp}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            pass
        except OSError:
            return None
        for suffix in ("-wal", "-shm", "-journal"):
            try:  # its journal goes with it: left here, it would be replayed into the new index
                os.rename(f"{self.path}{suffix}", f"{aside}{suffix}")
            except FileNotFoundError:
                pass
            except OSError:
                return None
        return aside

    def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn`` on the connection: retried while the database is busy; an index found unusable mid-way is
        rebuilt (or replaced by one in memory) and ``fn`` runs again."""
        for attempt in range(3):
            try:
                return _retry(lambda: fn(self._conn))
            except sqlite3.DatabaseError as exc:
                if _is_busy(exc) and not self._recovering and not self.in_memory and attempt < 2:
                    self._use_memory(LOCKED)  # what this process writes is in its folders; a later sync indexes it
                    continue
                if (
                    self._recovering
                    or _is_busy(exc)
                    or attempt == 2
                    or isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError))
                ):
                    raise
                if _is_unusable(exc) and attempt == 0 and not self.in_memory:
                    self._recover(str(exc))
                elif not self.in_memory:
                    self._use_memory(str(exc))
                else:
                    raise
        raise AssertionError("unreachable")

    # -- helpers ----------------------------------------------------------------------------------
    def _index_folder(self, run_dir: Path) -> int:
        """(Re)index one run folder from its files; 0 when it is not a readable run."""
        signature = _signature(run_dir)  # before reading: a change while it is read shows next time
        try:
            run = read_run(run_dir)
            steps = read_steps(run_dir)
        except (ValueError, OSError) as exc:
            self.unreadable.append((run_dir.name, str(exc)))

            def forget(conn: sqlite3.Connection) -> None:  # a row left would show the run as it was before
                for table in ("runs", "steps", "run_files"):
                    conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_dir.name,))

            self._run(lambda conn: _transaction(conn, forget))
            return 0
        # The folder decides: its name is the id commands take, its whole lines are the steps.
        run = run.model_copy(
            update={"run_id": run_dir.name, "steps": len(steps), "errors": sum(1 for s in steps if s.outcome == "error")}
        )
        if run.status is not RunStatus.running:
            _clean_stale_files(run_dir)

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM steps WHERE run_id = ?", (run.run_id,))
            conn.executemany(
                "INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [_step_values(run.run_id, s) for s in steps]
            )
            _upsert_run(conn, run)  # after the steps: the row's lowest confidence is read from them
            if run.status is not RunStatus.running:
                conn.execute("INSERT OR REPLACE INTO run_files VALUES (?, ?)", (run.run_id, signature))

        self._run(lambda conn: _transaction(conn, tx))
        return 1

    def _row(self, row: sqlite3.Row) -> RunRow:
        data = dict(row)
        status = RunStatus(data["status"])
        if status is RunStatus.running and not process_alive(data["pid"], data["host"]):
            data["status"] = RunStatus.interrupted.value
            data["end_reason"] = data["end_reason"] or "the recording process ended before the run finished"
        data["checks_passed"] = None if data["checks_passed"] is None else bool(data["checks_passed"])
        return RunRow.model_validate(data)


def iter_rows(index: RunIndex, page: int = 500, **filters: Any) -> Iterator[RunRow]:
    """Every matching run, a page at a time."""
    offset = 0
    while rows := index.runs(limit=page, offset=offset, **filters):
        yield from rows
        offset += len(rows)


def _upsert_run(conn: sqlite3.Connection, run: RunRecord) -> None:
    checks = None if not run.checks else int(all(c.passed for c in run.checks))
    conn.execute(
        "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
        (
            run.run_id,
            run.task_name,
            run.policy,
            run.model,
            run.status.value,
            run.end_reason,
            run.agent_verdict,
            checks,
            run.started_at.isoformat(),
            run.ended_at.isoformat() if run.ended_at else None,
            run.duration_s,
            run.steps,
            run.errors,
            run.layout_seed,
            run.parent_run,
            run.pid,
            run.host,
        ),
    )
    conn.execute(_SET_MIN_CONFIDENCE + " WHERE run_id = ?", (run.run_id,))


def _step_values(run_id: str, step: StepRecord) -> tuple[Any, ...]:
    action = step.action.action if step.action is not None else None
    return (
        run_id,
        step.index,
        action,
        step.outcome,
        step.error,
        step.confidence,
        step.url,
        step.started_at.isoformat(),
    )


def _mirror_labels(conn: sqlite3.Connection, run_dir: Path) -> None:
    events, size = read_label_events(run_dir)
    run_id = run_dir.name
    conn.execute("DELETE FROM labels WHERE run_id = ?", (run_id,))
    conn.executemany(
        "INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                run_id,
                c.label.id,
                c.label.step,
                c.label.verdict,
                json.dumps(c.label.correction) if c.label.correction else None,
                c.label.note,
                c.label.created_at.isoformat(),
                int(c.deleted),
            )
            for c in current_labels(events)
        ],
    )
    conn.execute("INSERT OR REPLACE INTO label_files VALUES (?, ?)", (run_id, size))


def _old_labels(conn: sqlite3.Connection) -> list[tuple[str, LabelAdded, bool]]:
    """The labels table of an index written before labels moved to the run folders (best effort, row by row)."""
    found: list[tuple[str, LabelAdded, bool]] = []
    try:
        cursor = conn.execute("SELECT id, run_id, idx, verdict, correction, note, created_at, deleted FROM labels")
        for row in cursor:
            try:
                correction = json.loads(row[4]) if row[4] else None
                label = LabelAdded(
                    id=row[0],
                    step=row[2],
                    verdict=row[3],
                    note=row[5],
                    created_at=row[6],
                    correction=correction if isinstance(correction, dict) else None,
                )
            except (ValidationError, ValueError, TypeError):
                continue
            found.append((str(row[1]), label, bool(row[7])))
    except sqlite3.DatabaseError:
        pass  # a damaged table: keep what was read
    return found


def _salvage_labels(aside: Path) -> list[tuple[str, LabelAdded, bool]]:
    """Labels still readable in an index that was moved aside (an older index held them nowhere else)."""
    if not aside.is_file():
        return []
    try:
        conn = sqlite3.connect(f"{aside.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        return _old_labels(conn)
    finally:
        conn.close()


def _check_schema(
    conn: sqlite3.Connection, tables: tuple[str, ...] = tuple(_COLUMNS), *, missing_ok: bool = False, older_ok: bool = False
) -> None:
    for table in tables:
        _check_table(conn, table, missing_ok=missing_ok, older_ok=older_ok)


def _check_table(conn: sqlite3.Connection, table: str, *, missing_ok: bool = False, older_ok: bool = False) -> None:
    """The table has this version's columns (``older_ok``: or those of the version before, to be upgraded)."""
    columns = tuple(r[1] for r in conn.execute(f"PRAGMA table_info({table})"))
    if older_ok and table in _OLDER_COLUMNS and columns == _OLDER_COLUMNS[table]:
        return
    if columns != _COLUMNS[table] and not (missing_ok and not columns):
        raise UnusableIndex(
            f"no such table {table}"
            if not columns
            else f"table {table} has columns {', '.join(columns)}, not those of a Glassbox runs index"
        )


def _transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], _T]) -> _T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body(conn)
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise
    return result


def _retry(fn: Callable[[], _T]) -> _T:
    """``fn``, tried again while the database is locked, for at most LOCKED_GIVE_UP_S in all."""
    deadline = time.monotonic() + LOCKED_GIVE_UP_S
    attempt = 0
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            attempt += 1
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(min(0.01 * attempt, 0.2))


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _is_unusable(exc: BaseException) -> bool:
    if isinstance(exc, UnusableIndex):
        return True
    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
        return False
    message = str(exc).lower()
    return any(m in message for m in _UNUSABLE)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An advisory lock across processes (best effort: where it cannot be taken, go on without it)."""
    try:
        import fcntl

        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def _clean_stale_files(folder: Path) -> None:
    """Remove temporary files that atomic writes left behind when their process died (never a live one's)."""
    for path in stale_temp_files(folder):
        try:
            path.unlink()
        except OSError:
            pass


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _signature(run_dir: Path) -> str:
    """What a run's files look like now (sizes and modification times of run.json and steps.jsonl)."""
    parts = []
    for name in (RUN_FILE, STEPS_FILE):
        try:
            st = (run_dir / name).stat()
            parts.append(f"{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append("-")
    return "/".join(parts)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _warn(message: str) -> None:
    """A recovery the user should know about: a warning event (the CLI shows it on stderr; a run's log keeps it)."""
    log.warning("runs index", message=message)
