"""One logging path: every module logs structlog events; this module sends them where they belong.

Library code (``agent``, ``tools``, ``tracer``, ``replays``, ``sites``) logs through
``get_logger("glassbox.<area>")`` and never prints. Each event, secrets masked, goes

- into ``log.jsonl`` of every run open in this process (:class:`RunLog`), at every level, one JSON object a
  line with ``level``, ``logger``, ``timestamp``, ``event`` and the event's own fields;
- to the terminal only through a console the CLI installs (:func:`set_console`): with none installed the
  library writes nothing to stdout or stderr (a script using the Python API stays quiet).

Levels say who the event is for: ``debug`` the record (the run log), ``info`` a person watching the
terminal (a minute-long compile), ``warning`` something they should act on or know (a recovered index).

    log = get_logger("glassbox.backend")
    log.info("warming up: compiling the decode step", cache_tokens=4096, compiler="CUDA graphs")
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import structlog
from pydantic import BaseModel
from structlog.typing import EventDict, FilteringBoundLogger

from tracer.secrets import Scrubber

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
# Keys every event carries (or may carry) that the one-line terminal form leaves out or places itself.
_FRAME_KEYS = ("event", "level", "logger", "timestamp", "message", "exception")

_lock = threading.Lock()
_sinks: list[TextIO] = []
_scrubbers: list[Scrubber] = []
_configured = False


@dataclass(frozen=True)
class Console:
    """Where the terminal's share of the events goes: ``show`` gets each event (secrets masked) at or above
    ``level``; ``quiet`` loggers reach it only from ``error`` up (what they say at lower levels, the console's owner
    already prints its own way: the CLI's step lines say what the loop's info and step-error warnings do)."""

    show: Callable[[dict[str, Any]], None]
    level: str = "info"
    quiet: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"console level must be one of {', '.join(LEVELS)}, not {self.level!r}")

    def wants(self, event: Mapping[str, Any]) -> bool:
        level = LEVELS.get(str(event.get("level")), LEVELS["error"])
        if event.get("logger") in self.quiet and level < LEVELS["error"]:
            return False
        return level >= LEVELS[self.level]


_console: Console | None = None


def get_logger(name: str) -> FilteringBoundLogger:
    """The logger for one area (``glassbox.backend``, ``glassbox.index``, ...); logging is configured first, so
    an event logged before anything else set it up still goes only where this module sends it."""
    configure_logging()
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger


def configure_logging() -> None:
    """Route every structlog event in this process through the run logs and the console; once per process.

    A logger from plain ``structlog.get_logger(name)`` is routed too (the name arrives as ``logger``).
    """
    global _configured
    with _lock:
        if _configured:
            return
        structlog.configure(
            processors=[
                _add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                # Exceptions become text before the scrubber sees the event: a rendered traceback (with locals)
                # after it could print a secret.
                structlog.processors.format_exc_info,
                _scrub,
                _tee_to_runs,
                _to_console,
            ],
            logger_factory=_NamedLogger,
            cache_logger_on_first_use=False,
        )
        _configured = True
    # A module logging through the standard library under "glassbox" takes the same path (and never reaches
    # logging's last-resort handler, which prints to stderr).
    stdlib = logging.getLogger("glassbox")
    if not any(isinstance(h, _ToStructlog) for h in stdlib.handlers):
        stdlib.addHandler(_ToStructlog())
    stdlib.setLevel(logging.DEBUG)
    stdlib.propagate = False


def set_console(console: Console | None) -> Console | None:
    """Show events on a terminal (the CLI does this once), or stop (``None``); returns the previous console."""
    global _console
    configure_logging()
    with _lock:
        previous, _console = _console, console
    return previous


def plain_console(stream: TextIO, level: str = "info") -> Console:
    """A console that writes ``level: event ...`` lines to ``stream`` (a script or a child process that wants
    the events on its stderr without the CLI): ``set_console(plain_console(sys.stderr, "warning"))``."""

    def show(event: dict[str, Any]) -> None:
        stream.write(f"{event.get('level', 'info')}: {format_event(event)}\n")
        stream.flush()

    return Console(show=show, level=level)


def format_event(event: Mapping[str, Any], *, traceback: bool = True) -> str:
    """One readable line, ``event: message (key=value ...)`` with no level, time or logger (the caller adds what
    it wants), then a traceback if the event carries one and ``traceback`` is true."""
    text = str(event.get("event", ""))
    if event.get("message") not in (None, ""):
        text += f": {event['message']}"
    fields = " ".join(f"{key}={_field(value)}" for key, value in event.items() if key not in _FRAME_KEYS)
    if fields:
        text += f" ({fields})"
    if traceback and event.get("exception"):
        text += "\n" + str(event["exception"]).rstrip()
    return text


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


class _NamedLogger:
    """What structlog wraps: it only keeps the logger's name. The processors write the event (run logs,
    console) and then drop it, so this never prints; structlog's default logger would print to stdout."""

    def __init__(self, name: str = "", *_args: Any) -> None:
        self.name = name

    def msg(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            extra = {"exc_info": record.exc_info} if record.exc_info else {}
            structlog.get_logger(record.name).log(record.levelno, record.getMessage(), **extra)
        except Exception:  # logging must not break the caller: the standard library's own convention
            self.handleError(record)


def _add_logger_name(logger: Any, _method: str, event: EventDict) -> EventDict:
    name = getattr(logger, "name", "")
    if name and "logger" not in event:
        event["logger"] = name
    return event


def _scrub(_logger: Any, _method: str, event: EventDict) -> EventDict:
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


def _tee_to_runs(_logger: Any, _method: str, event: EventDict) -> EventDict:
    if _sinks:
        line = json.dumps(event, ensure_ascii=False, default=str) + "\n"
        with _lock:
            for fh in _sinks:
                fh.write(line)
                fh.flush()
    return event


def _to_console(_logger: Any, _method: str, event: EventDict) -> EventDict:
    console = _console
    if console is not None and console.wants(event):
        try:
            console.show(dict(event))
        except (OSError, ValueError):  # a closed or broken terminal must not break the run being logged
            pass
    raise structlog.DropEvent  # written where it belongs; nothing is left for the logger to print


def _field(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False, default=str)
    return json.dumps(value, ensure_ascii=False) if not value or any(c.isspace() for c in value) else value


# Importing this module routes structlog at once: a module that logs through plain ``structlog.get_logger`` before
# anything else ran would otherwise print the event to stdout (structlog's default).
configure_logging()

__all__ = ["Console", "LEVELS", "RunLog", "configure_logging", "format_event", "get_logger", "plain_console", "set_console"]
