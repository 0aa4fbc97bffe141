"""Per-step harness time (perceive + act + settle + record, no model) against a bare Playwright screenshot.

Runs the bundled publish task with the script policy several times against the bundled shop. A second
browser in the same process takes the bare default ``page.screenshot()`` PNGs of the shop's pages: in
batches between runs, and one right after every step (outside the step's time), so that the baseline sees
the same load as the steps on a busy machine.

The harness per step is the step's whole wall time, from the end of the previous step's StepRecorded event
(the run's start for step 0) to this step's, less the policy's think time: everything the loop does besides
deciding (perceive, act, settle, writing the step, run.json and the index, publishing the event).
Target: the harness p50 at most 1x a bare screenshot's p50. The same per action (a click, typing, a key ...)
shows where the steps above it are: a step costs at least its settle's frame and capture plus its own input.

With ``--otel`` the runs alternate between OpenTelemetry export off and on (live export to a local OTLP/HTTP
receiver on 127.0.0.1, as ``glassbox run --otel`` does): the harness per step of each, and the time the export's
subscriber took per step in the loop's thread (target: under 2 ms a step), and the close at the end of a run.

    .venv/bin/python bench/step_overhead.py [--runs 3] [--shots 30] [--otel]
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from agent import load_task, run_task
from agent.events import Hooks
from sites.shop import ShopServer
from tools.browser import BrowserExecutor, BrowserSettings
from tracer.schema import StepRecord

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class BareShots:
    """A browser of its own on a thread of its own (one Playwright per thread) that takes default Playwright PNG
    screenshots of the shop when asked, and says how long each took (ms)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._asks: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._answers: queue.Queue[list[float] | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="bare-shots", daemon=True)
        self._thread.start()

    def take(self, path: str, shots: int) -> list[float]:
        self._asks.put((path, shots))
        answer = self._answers.get()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self) -> None:
        self._asks.put(None)
        self._thread.join()

    def _work(self) -> None:
        with BrowserExecutor(BrowserSettings()) as browser:
            current = None
            while (ask := self._asks.get()) is not None:
                path, shots = ask
                try:
                    if path != current:
                        browser.goto(self.base_url + path)
                        browser.page.screenshot(type="png")  # warm-up
                        current = path
                    times = []
                    for _ in range(shots):
                        t0 = time.perf_counter()
                        browser.page.screenshot(type="png")
                        times.append((time.perf_counter() - t0) * 1000)
                    self._answers.put(times)
                except BaseException as exc:
                    self._answers.put(exc)


_RECEIVER = """
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class _Receiver:
    """A local OTLP/HTTP endpoint in a process of its own (as a collector is) that takes every export: the bench
    times the sender, not a collector."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _RECEIVER], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _otel_hooks(task: object, per_step: list[float]) -> tuple[Hooks, object]:
    """Hooks exporting the run, with the subscriber's own time per step recorded in ``per_step`` (ms)."""
    from agent.otel import attach_otel
    from tracer.otel_sdk import OtelSession
    from tracer.secrets import Scrubber

    session = OtelSession.start()
    hooks = Hooks()
    subscriber = attach_otel(hooks, session, scrubber=Scrubber.from_secrets(task.secret_values()))  # type: ignore[attr-defined]
    recorded = subscriber.recorded

    def timed(event: object) -> None:
        t0 = time.perf_counter()
        recorded(event)  # type: ignore[arg-type]
        per_step.append((time.perf_counter() - t0) * 1000)

    subscriber.recorded = timed  # type: ignore[method-assign]
    return hooks, session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shots", type=int, default=30)
    parser.add_argument("--otel", action="store_true", help="alternate runs with OpenTelemetry export off and on")
    args = parser.parse_args()
    receiver = _Receiver() if args.otel else None
    if receiver is not None:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url
    export_on: list[bool] = []  # per step: was the run exporting
    subscriber_ms: list[float] = []
    close_ms: list[float] = []

    task = load_task(ROOT / "tasks" / "publish_product.yaml")
    harness: list[float] = []
    parts: dict[str, list[float]] = {"perceive": [], "act": [], "record": [], "perceive+act+record": []}
    bare: list[float] = []
    paired: list[float] = []  # each step's harness time over the bare screenshot taken right after it
    by_kind: dict[str, list[float]] = {}  # harness per step, by the step's action (a click, typing, a key ...)
    last_event: list[float] = []  # perf_counter() of the previous StepRecorded event of the run
    shots: list[BareShots] = []
    exporting = [False]

    def started(_run: object, _run_dir: object) -> None:
        last_event[:] = [time.perf_counter()]

    def collect(step: StepRecord) -> None:
        now = time.perf_counter()
        t = step.timings
        harness.append((now - last_event[0]) * 1000 - t.think_ms)
        by_kind.setdefault(step.action.action if step.action is not None else "no action", []).append(harness[-1])
        export_on.append(exporting[0])
        bare.extend(shots[0].take("/login", 1))
        paired.append(harness[-1] / bare[-1])
        last_event[:] = [time.perf_counter()]  # the bare shot is not the next step's
        parts["perceive"].append(t.perceive_ms)
        parts["act"].append(t.act_ms)
        parts["record"].append(t.record_ms)
        parts["perceive+act+record"].append(t.perceive_ms + t.act_ms + t.record_ms)

    with tempfile.TemporaryDirectory() as runs_dir, ShopServer() as shop:
        shots.append(BareShots(shop.base_url))
        try:
            for i in range(args.runs * (2 if args.otel else 1)):
                bare += shots[0].take("/healthz", args.shots // 2) + shots[0].take("/login", args.shots // 2)
                exporting[0] = args.otel and i % 2 == 1
                hooks, session = _otel_hooks(task, subscriber_ms) if exporting[0] else (None, None)
                result = run_task(task, runs_dir=Path(runs_dir), on_step=collect, on_start=started, hooks=hooks)
                if session is not None:
                    t0 = time.perf_counter()
                    session.close()  # type: ignore[attr-defined]
                    close_ms.append((time.perf_counter() - t0) * 1000)
                assert result.status.value == "succeeded", result.end_reason
            bare += shots[0].take("/healthz", args.shots // 2) + shots[0].take("/login", args.shots // 2)
        finally:
            shots[0].close()
            if receiver is not None:
                receiver.close()

    print(
        f"step_overhead: {len(harness)} steps over {args.runs * (2 if args.otel else 1)} runs, "
        f"{len(bare)} bare screenshots (1280x800 PNG)"
    )
    print(f"  bare screenshot      p50 {pct(bare, 0.5):7.1f} ms   p95 {pct(bare, 0.95):7.1f} ms")
    for name, values in parts.items():
        print(f"  {name:<20} p50 {pct(values, 0.5):7.1f} ms   p95 {pct(values, 0.95):7.1f} ms")
    print(
        f"  harness per step     p50 {pct(harness, 0.5):7.1f} ms   p95 {pct(harness, 0.95):7.1f} ms"
        f"   mean {statistics.mean(harness):.1f} ms"
    )
    ratio = pct(harness, 0.5) / pct(bare, 0.5)
    print(f"  ratio harness/bare (p50): {ratio:.2f}x   (target <= 1x: {'met' if ratio <= 1 else 'NOT met'})")
    print(f"  ratio harness/bare (p95): {pct(harness, 0.95) / pct(bare, 0.95):.2f}x")
    print(f"  step / the bare shot right after it: p50 {pct(paired, 0.5):.2f}x   p95 {pct(paired, 0.95):.2f}x")
    kinds = sorted(by_kind.items(), key=lambda item: -len(item[1]))
    print(
        "  harness per step by action (p50, ratio to the bare p50): "
        + ", ".join(
            f"{name} x{len(values)} {pct(values, 0.5):.0f} ms {pct(values, 0.5) / pct(bare, 0.5):.2f}x" for name, values in kinds
        )
    )
    if args.otel:
        off = [h for h, on in zip(harness, export_on, strict=True) if not on]
        on = [h for h, on in zip(harness, export_on, strict=True) if on]
        print(f"OpenTelemetry export ({args.runs} runs off, {args.runs} on, alternating; live export to 127.0.0.1):")
        print(f"  harness per step, export off  p50 {pct(off, 0.5):7.1f} ms   p95 {pct(off, 0.95):7.1f} ms")
        print(f"  harness per step, export on   p50 {pct(on, 0.5):7.1f} ms   p95 {pct(on, 0.95):7.1f} ms")
        print(
            f"  export subscriber per step    p50 {pct(subscriber_ms, 0.5):7.2f} ms   p95 {pct(subscriber_ms, 0.95):7.2f} ms"
            f"   max {max(subscriber_ms):.2f} ms   (target < 2 ms: {'met' if pct(subscriber_ms, 0.5) < 2 else 'NOT met'})"
        )
        print(f"  closing the exporter at run end: max {max(close_ms):.0f} ms")


if __name__ == "__main__":
    main()
