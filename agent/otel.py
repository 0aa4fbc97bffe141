"""Live OpenTelemetry export: a subscriber of the run's events (:mod:`agent.events`) that sends each step's spans
as soon as the step is recorded, under the run's ``invoke_agent`` span (opened when the run starts, closed with
its outcome and checks when it ends). The spans are :mod:`tracer.otel_spans`'s, the same as
``glassbox export otel`` sends for a recorded run.

    session = OtelSession.start()
    attach_otel(hooks, session, scrubber=Scrubber.from_secrets(task.secret_values()))
    run_task(task, hooks=hooks)
    session.close()

Never breaks a run: the first thing that goes wrong here is logged once and the export stops for this run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from agent.events import Hooks, RunEnded, RunStarted, StepRecorded
from tracer.logs import get_logger
from tracer.otel_sdk import OtelSession, SpanTree
from tracer.otel_spans import Conventions, MediaRef, SpanDesc, finish_run_span, run_span, scrub_span, step_spans
from tracer.schema import RunRecord
from tracer.secrets import Scrubber

log = get_logger("glassbox.otel")
E = TypeVar("E", RunStarted, StepRecorded, RunEnded)


class OtelSubscriber:
    """Turns one run's events into spans (see the module docstring)."""

    def __init__(
        self,
        session: OtelSession,
        *,
        conventions: Conventions | None = None,
        scrubber: Scrubber | None = None,
        viewer_url: str | None = None,
        parent: str | None = None,
    ) -> None:
        self.session = session
        self.conv = conventions or Conventions.from_env()
        self.scrub = scrubber or Scrubber([])
        self.viewer_url = viewer_url
        self.parent = parent
        self._tree: SpanTree | None = None
        self._root: SpanDesc | None = None
        self._run: RunRecord | None = None
        self._media = MediaRef(viewer_url=viewer_url)
        self._broken = False

    def attach(self, hooks: Hooks) -> Callable[[], None]:
        """Subscribe to ``hooks``; returns a function that unsubscribes."""
        off = [
            hooks.on(RunStarted, lambda e: self._guard(self.started, e)),
            hooks.on(StepRecorded, lambda e: self._guard(self.recorded, e)),
            hooks.on(RunEnded, lambda e: self._guard(self.ended, e)),
        ]

        def detach() -> None:
            for undo in off:
                undo()

        return detach

    def started(self, event: RunStarted) -> None:
        self._run = event.run
        self._media = MediaRef(viewer_url=self.viewer_url, run_dir=str(event.run_dir.resolve()))
        self._tree = self.session.trace(self.parent)
        self._root = run_span(event.run, self.conv)
        self._tree.emit(scrub_span(self._root.model_copy(deep=True), self.scrub))

    def recorded(self, event: StepRecorded) -> None:
        if self._tree is None or self._run is None:
            return
        for span in step_spans(self._run, event.step, self.conv, media=self._media):
            self._tree.emit(scrub_span(span, self.scrub))

    def ended(self, event: RunEnded) -> None:
        if self._tree is None or self._root is None:
            return
        root = finish_run_span(self._root, event.run)
        self._tree.emit(scrub_span(root, self.scrub))
        self._tree = self._root = None

    def _guard(self, handler: Callable[[E], None], event: E) -> None:
        if self._broken:
            return
        try:
            handler(event)
        except Exception as exc:  # noqa: BLE001  # export never breaks the run; said once, then off
            self._broken = True
            log.warning("OpenTelemetry export stopped for this run", error=f"{type(exc).__name__}: {exc}")


def attach_otel(
    hooks: Hooks,
    session: OtelSession,
    *,
    scrubber: Scrubber | None = None,
    viewer_url: str | None = None,
    parent: str | None = None,
    conventions: Conventions | None = None,
) -> OtelSubscriber:
    """Export the run ``hooks`` belongs to through ``session`` (``parent``: a W3C traceparent, e.g. an eval's)."""
    subscriber = OtelSubscriber(session, conventions=conventions, scrubber=scrubber, viewer_url=viewer_url, parent=parent)
    subscriber.attach(hooks)
    return subscriber
