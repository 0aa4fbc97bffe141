"""structlog, configured once per process: JSON lines into the current run's ``log.jsonl`` and to
stderr (errors only: the CLI prints the steps) as JSON when it is not a terminal, readable on a terminal.
Secret values are masked in every event before it is written anywhere.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

import structlog
from pydantic import BaseModel

from tracer.secrets import Scrubber

_lock = threading.Lock()
_sinks: list[TextIO] = []
_scrubbers: list[Scrubber] = []
_configured = False


def configure_logging(*, console: TextIO | None = None) -> None:
    """Configure structlog once; later calls do nothing."""
    global _configured
    with _lock:
        if _configured:
            return
        stream = console or sys.stderr
        tty = stream.isatty()
        processors: list[Any] = [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Exceptions become text before the scrubber sees the event: a rendered traceback (with locals)
            # after it could print a secret.
            structlog.processors.format_exc_info,
            _scrub,
            _tee_to_runs,
        ]
        if tty:
            processors += [_only_errors, structlog.dev.ConsoleRenderer(colors=True)]
        else:
            processors += [_only_errors, structlog.processors.JSONRenderer(ensure_ascii=False)]
        structlog.configure(processors=processors, logger_factory=structlog.PrintLoggerFactory(stream),
                            cache_logger_on_first_use=False)
        _configured = True


class RunLog:
    """While open, every log event is also appended to ``run_dir/log.jsonl`` (secrets masked)."""

    def __init__(self, run_dir: Path, scrubber: Scrubber) -> None:
        configure_logging()
        self._fh = open(run_dir / "log.jsonl", "a", encoding="utf-8")
        self._scrubber = scrubber
        with _lock:
            _sinks.append(self._fh)
            _scrubbers.append(scrubber)

    def close(self) -> None:
        with _lock:
            if self._fh in _sinks:
                _sinks.remove(self._fh)
                _scrubbers.remove(self._scrubber)
        self._fh.close()


def _scrub(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    scrubbers = list(_scrubbers)
    if not scrubbers:
        return event
    event = {key: _loggable(value) for key, value in event.items()}
    for scrubber in scrubbers:
        event = scrubber.scrub(event)
    return event


def _loggable(value: Any) -> Any:
    """``value`` as the renderers will write it: an exception or other object becomes its text *before* the
    scrubber runs, since ``str()`` of it later (JSON ``default=str``, the console) would bypass the mask."""
    if value is None or isinstance(value, (str, int, float, bool, BaseModel)):
        return value
    if isinstance(value, dict):
        return {str(k): _loggable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_loggable(v) for v in value]
    return str(value)


def _tee_to_runs(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    if _sinks:
        line = json.dumps(event, ensure_ascii=False, default=str) + "\n"
        with _lock:
            for fh in _sinks:
                fh.write(line)
                fh.flush()
    return event


def _only_errors(_logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    if method in ("debug", "info", "warning"):
        raise structlog.DropEvent
    return event
