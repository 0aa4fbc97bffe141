"""OpenTelemetry on the command line: ``glassbox export otel RUN...`` and the ``--otel`` of ``glassbox run``.

Where spans go, and how, comes only from the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_PROTOCOL`` and their ``_TRACES_`` forms); message content
only with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``; the names with
``OTEL_SEMCONV_STABILITY_OPT_IN`` (:mod:`tracer.otel_spans`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from cli.output import console, err_console, say_damaged, shown
from cli.run_ref import resolve_run

if TYPE_CHECKING:
    from agent.events import Hooks
    from agent.task import Task
    from tracer.otel_sdk import OtelSession
    from tracer.secrets import Scrubber


OTEL_HELP = (
    "Send the run as an OpenTelemetry trace (GenAI conventions) over OTLP; also on when OTEL_EXPORTER_OTLP_ENDPOINT "
    "is set. Endpoint, headers and protocol come from the OTEL_EXPORTER_OTLP_* variables."
)
OtelFlag = Annotated[bool, typer.Option("--otel", help=OTEL_HELP)]


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {shown(message)}", soft_wrap=True)


def start_session() -> "OtelSession":
    from tracer.otel_sdk import OtelSession

    return OtelSession.start(warn=_warn)


def export_for_run(
    flag: bool,
    hooks: "Hooks",
    task: "Task | None" = None,
    *,
    source_run: Path | None = None,
    viewer_url: str | None = None,
    parent: str | None = None,
) -> "OtelSession | None":
    """With ``--otel`` (or an OTLP endpoint in the environment), export the run ``hooks`` will see; returns the
    session to close after the run (None: no export). Its secrets are ``task``'s, or for a replay or resume
    those of ``source_run``'s task file."""
    from tracer.otel_sdk import export_requested

    if not export_requested(flag):
        return None
    from agent.otel import attach_otel
    from tracer.secrets import Scrubber

    if task is not None:
        scrubber = Scrubber.from_secrets(task.secret_values())
    else:
        scrubber = _task_scrubber(source_run) if source_run is not None else Scrubber([])
    session = start_session()
    attach_otel(hooks, session, scrubber=scrubber, viewer_url=viewer_url, parent=parent)
    return session


def export_otel_cmd(
    runs: Annotated[list[str], typer.Argument(metavar="RUN...", help="Runs to send: folder, id or unique id prefix.")],
    runs_dir: Annotated[Path, typer.Option(help="The runs directory.")] = Path("runs"),
    viewer_url: Annotated[
        Optional[str], typer.Option(help="Link screenshots to this running viewer (e.g. http://127.0.0.1:8765), not the files.")
    ] = None,
) -> None:
    """Send recorded runs as OpenTelemetry traces (GenAI conventions), with the times they were recorded, to the
    OTLP endpoint of the OTEL_EXPORTER_OTLP_* variables (default: http://localhost:4318, HTTP/protobuf)."""
    from tracer.otel_export import export_run
    from tracer.otel_sdk import endpoint_for_humans
    from tracer.otel_spans import Conventions, MediaRef

    if viewer_url is not None and not viewer_url.startswith(("http://", "https://")):
        err_console.print(f"[bold red]error:[/] --viewer-url must be an http:// or https:// URL, not {viewer_url!r}")
        raise typer.Exit(code=2)
    refs = [resolve_run(ref, runs_dir) for ref in runs]  # every reference checked before anything is sent
    from tracer.otel_sdk import OtelSession

    conv = Conventions.from_env()
    # No run goes on here: a failed send is this command's error, said once below (not also as a run's warning).
    session = OtelSession.start(warn=lambda _message: None)
    spans = 0
    try:
        for ref in refs:
            media = MediaRef(viewer_url=viewer_url, run_dir=str(ref.run_dir.resolve()))
            sent = export_run(ref.run_dir, session.trace(), conv, scrubber=_task_scrubber(ref.run_dir), media=media)
            say_damaged(ref.run_dir, sent.unreadable, "left out of the trace; its run span counts them")
            spans += sent.spans
        session.flush()
    finally:
        session.close()
    where = endpoint_for_humans()
    if session.failed:
        err_console.print(f"[bold red]error:[/] the collector at {escape(where)} did not take the spans", soft_wrap=True)
        raise typer.Exit(code=1)
    console.print(f"sent {len(refs)} run(s), {spans} spans, to {escape(where)}", soft_wrap=True)


def _task_scrubber(run_dir: Path) -> "Scrubber":
    """The run's records are masked already; the secrets its task file (when still at hand) or the environment
    can give are masked again (the last line for anything recorded before a secret was declared)."""
    from replays.labels import run_secrets
    from tracer.secrets import Scrubber
    from tracer.store import read_run

    try:
        return Scrubber.from_secrets(run_secrets(read_run(run_dir)))
    except (OSError, ValueError):  # no readable run.json: its records stay as masked
        return Scrubber([])
