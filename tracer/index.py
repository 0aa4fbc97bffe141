"""SQLite index (WAL) over runs, steps and labels, so thousands of runs list without reading folders.

The run folders are the truth; the index is rebuilt from them when missing or stale
(:meth:`RunIndex.sync`). Many processes may write at once: short transactions, a busy timeout,
and a retry when the database is locked.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from pydantic import BaseModel

from tracer.schema import RunRecord, RunStatus, StepRecord

INDEX_FILE = "index.sqlite3"
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
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
    host TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_task ON runs (task_name);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    action TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    confidence REAL,
    url TEXT,
    started_at TEXT NOT NULL,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    correction TEXT,
    note TEXT,
    created_at TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS labels_step ON labels (run_id, idx);
"""


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


class RunIndex:
    """The index of one runs directory. Cheap to open; one connection per instance and thread."""

    def __init__(self, runs_dir: Path) -> None:
        runs_dir.mkdir(parents=True, exist_ok=True)
        self.runs_dir = runs_dir
        self.path = runs_dir / INDEX_FILE
        self._conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._retry(lambda: self._conn.execute("PRAGMA journal_mode=WAL"))
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._retry(lambda: self._conn.executescript(_SCHEMA))

    def close(self) -> None:
        self._conn.close()

    # -- writing ----------------------------------------------------------------------------------
    def upsert_run(self, run: RunRecord) -> None:
        checks = None if not run.checks else int(all(c.passed for c in run.checks))
        values = (
            run.run_id, run.task_name, run.policy, run.model, run.status.value, run.end_reason, run.agent_verdict,
            checks, run.started_at.isoformat(), run.ended_at.isoformat() if run.ended_at else None, run.duration_s,
            run.steps, run.errors, run.layout_seed, run.parent_run, run.pid, run.host,
        )
        self._write(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values,
        )

    def add_step(self, run_id: str, step: StepRecord) -> None:
        action = step.action.get("action") if step.action else None
        self._write(
            "INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, step.index, action, step.outcome, step.error, step.confidence, step.url,
             step.started_at.isoformat()),
        )

    def remove_run(self, run_id: str) -> None:
        def tx() -> None:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                for table in ("runs", "steps", "labels"):
                    self._conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

        self._retry(tx)

    def add_label(self, run_id: str, idx: int, verdict: str, correction: dict[str, Any] | None, note: str | None) -> int:
        cur = self._write(
            "INSERT INTO labels (run_id, idx, verdict, correction, note, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, idx, verdict, json.dumps(correction) if correction else None, note,
             datetime.now().astimezone().isoformat()),
        )
        return int(cur.lastrowid)

    def delete_label(self, label_id: int) -> bool:
        """Undo a label (kept in the table, marked deleted); False when there was none."""
        cur = self._write("UPDATE labels SET deleted = 1 WHERE id = ? AND deleted = 0", (label_id,))
        return cur.rowcount == 1

    # -- reading ----------------------------------------------------------------------------------
    def runs(
        self, *, task: str | None = None, status: str | None = None, policy: str | None = None,
        since: datetime | None = None, until: datetime | None = None, search: str | None = None,
        limit: int = 100, offset: int = 0,
    ) -> list[RunRow]:
        """Runs, newest first, filtered. A ``running`` run whose process is gone lists as interrupted."""
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
        sql += " ORDER BY started_at DESC, run_id DESC LIMIT ? OFFSET ?"
        rows = self._conn.execute(sql, (*args, limit, offset)).fetchall()
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
        return [r[0] for r in self._conn.execute(f"SELECT DISTINCT {column} FROM runs ORDER BY 1")]

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY idx", (run_id,)).fetchall()
        return [dict(r) for r in rows]

    def labels(self, run_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM labels WHERE deleted = 0" + (" AND run_id = ?" if run_id else "") + " ORDER BY id"
        rows = self._conn.execute(sql, (run_id,) if run_id else ()).fetchall()
        return [{**dict(r), "correction": json.loads(r["correction"]) if r["correction"] else None} for r in rows]

    def sync(self) -> int:
        """Index every run folder missing from the index (or changed since); returns how many were (re)indexed."""
        from tracer.store import RUN_FILE, read_run, read_steps

        known = {r["run_id"]: r["status"] for r in self._conn.execute("SELECT run_id, status FROM runs")}
        done = 0
        for run_dir in self.runs_dir.iterdir():
            if not (run_dir / RUN_FILE).is_file():
                continue
            if run_dir.name in known and known[run_dir.name] != RunStatus.running.value:
                continue
            try:
                run = read_run(run_dir)
            except ValueError:
                continue
            self.upsert_run(run)
            for step in read_steps(run_dir):
                self.add_step(run.run_id, step)
            done += 1
        for run_id in set(known) - {p.name for p in self.runs_dir.iterdir()}:
            self.remove_run(run_id)  # the folder was deleted by hand
        return done

    # -- helpers ----------------------------------------------------------------------------------
    def _row(self, row: sqlite3.Row) -> RunRow:
        from tracer.store import process_alive

        data = dict(row)
        status = RunStatus(data["status"])
        if status is RunStatus.running and not process_alive(data["pid"], data["host"]):
            data["status"] = RunStatus.interrupted.value
            data["end_reason"] = data["end_reason"] or "the recording process ended before the run finished"
        data["checks_passed"] = None if data["checks_passed"] is None else bool(data["checks_passed"])
        return RunRow.model_validate(data)

    def _write(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        return self._retry(lambda: self._conn.execute(sql, args))

    @staticmethod
    def _retry(fn: Callable[[], _T], attempts: int = 20) -> _T:
        for attempt in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")


def iter_rows(index: RunIndex, page: int = 500, **filters: Any) -> Iterator[RunRow]:
    """Every matching run, a page at a time."""
    offset = 0
    while rows := index.runs(limit=page, offset=offset, **filters):
        yield from rows
        offset += len(rows)
