"""The fast capture path and the background recorder: a DevTools capture is page.screenshot()'s lossless PNG,
pixel for pixel, with the caret hidden; the run writer's background writes are all on disk when a step is
announced, when the run finishes, when a write fails and when the process is killed."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from urllib.parse import quote

import pytest
from PIL import Image

from agent import load_task, run_task
from agent.events import Hooks, StepRecorded
from tests.conftest import ROOT
from tests.tracer.test_crash_recovery import png, record, step
from tools.capture import png_size
from tools.fake import FakeExecutor
from tracer import RunStatus, read_run, read_steps
from tracer.index import RunIndex
from tracer.store import RunWriter


def pixels(data: bytes) -> tuple[tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size, image.convert("RGBA").tobytes()


# -- capture --------------------------------------------------------------------------------------------------


TALL_PAGE = """<!doctype html><body style="margin:0">""" + "".join(
    f'<div style="height:90px;background:hsl({i * 37 % 360},70%,60%)">row {i} <input value="field {i}"></div>' for i in range(30)
)


@pytest.mark.parametrize("scale", [1.0, 2.0, 1.5])
def test_the_capture_equals_page_screenshot_pixel_for_pixel(chromium, shop, scale):
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings(viewport=(640, 400), device_scale_factor=scale)) as browser:
        browser.goto(shop.base_url + "/login")
        browser.page.get_by_label("Username", exact=True).fill("ada")  # focused, caret at the end
        observation = browser.perceive()
        reference = browser.page.screenshot(type="png")
        browser.goto("data:text/html," + quote(TALL_PAGE))
        browser.page.mouse.wheel(0, 1234)  # scrolled, with a focused field in view
        browser.page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        browser.page.focus("input >> nth=15")
        scrolled = browser.perceive()
        scrolled_reference = browser.page.screenshot(type="png")
    size, captured = pixels(observation.screenshot_png)
    expected = (round(640 * scale), round(400 * scale))
    assert size == observation.screenshot_size == png_size(observation.screenshot_png) == expected
    assert (size, captured) == pixels(reference)
    assert browser_scrolled(scrolled.screenshot_png) and pixels(scrolled.screenshot_png) == pixels(scrolled_reference)


def browser_scrolled(data: bytes) -> bool:
    """The top-left pixel is not the first row's colour (hsl(0,70%,60%) is reddish)."""
    with Image.open(io.BytesIO(data)) as image:
        r, g, b = image.convert("RGB").getpixel((2, 2))
    return not (r > 200 and g < 140 and b < 140)


CARET_PAGE = """<!doctype html><style>body{margin:0;background:#fff}
#f{caret-color:rgb(255,0,0) !important;color:#fff;background:#fff;border:0;outline:0;font:60px monospace;width:300px}</style>
<input id="f" autofocus>"""


def test_the_caret_is_hidden_even_against_the_pages_own_important_colour(chromium):
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings(viewport=(320, 120))) as browser:
        browser.goto("data:text/html," + quote(CARET_PAGE))
        browser.page.focus("#f")
        colour = browser.page.evaluate("getComputedStyle(document.querySelector('#f')).caretColor")
        browser.page.keyboard.type("a")  # typing restarts the blink: the caret is drawn now, if at all
        _, data = pixels(browser.perceive().screenshot_png)
    red = sum(1 for i in range(0, len(data), 4) if data[i] > 200 and data[i + 1] < 80 and data[i + 2] < 80)
    assert colour == "rgba(0, 0, 0, 0)" and red == 0


FULLSCREEN_PAGE = """<!doctype html><body style="margin:0">
<button style="position:absolute;left:0;top:0;width:300px;height:300px"
  onclick="document.documentElement.requestFullscreen()">full screen</button>
<div style="position:absolute;right:0;bottom:0;width:200px;height:200px;background:rgb(0,255,0)"></div></body>"""


def test_a_page_in_full_screen_is_still_captured_whole(chromium):
    """requestFullscreen() resizes headless Chromium's surface to 800x600 under the emulated 1280x800 viewport: the
    capture was an 800x600 crop, so the model saw a screen its coordinates were not mapped onto."""
    from tools.actions import ToolCall, parse_tool_call
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings()) as browser:
        browser.goto("data:text/html," + quote(FULLSCREEN_PAGE))
        call = ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [100, 100]})
        assert browser.act(parse_tool_call(call)).status == "ok"
        assert browser.page.evaluate("!!document.fullscreenElement")
        shots = [browser.perceive().screenshot_png]  # the settle's capture
        shots.append(browser.perceive().screenshot_png)  # a fresh one
    for shot in shots:
        with Image.open(io.BytesIO(shot)) as image:
            assert image.size == (1280, 800)
            assert image.convert("RGB").getpixel((1275, 795)) == (0, 255, 0)  # the corner the crop left out


def test_a_detached_session_is_reopened(chromium, shop):
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings(viewport=(320, 200))) as browser:
        browser.goto(shop.base_url + "/login")
        first = browser.perceive().screenshot_png
        assert browser._capture is not None and browser._capture._session is not None
        browser._capture._session.detach()
        again = browser.perceive().screenshot_png
        third = browser.perceive().screenshot_png  # from a new session
    assert pixels(first) == pixels(again) == pixels(third)


def test_a_capture_before_the_new_documents_first_frame_is_tried_again(chromium, shop, monkeypatch):
    """Chromium answers "Unable to capture screenshot" while a new document has no frame yet (seen under load in a
    perceive right after a navigation): the capture is tried again, not failed over to page.screenshot()."""
    from tools.browser import BrowserExecutor, BrowserSettings

    with BrowserExecutor(BrowserSettings(viewport=(320, 200))) as browser:
        browser.goto(shop.base_url + "/login")
        assert browser._capture is not None
        expected = browser._capture.png()
        session = browser._capture._open()
        real_send, answers = session.send, ["no frame", "no frame"]

        def send(method, params=None, **kwargs):
            if method == "Page.captureScreenshot" and answers:
                answers.pop()
                raise RuntimeError("Protocol error (Page.captureScreenshot): Unable to capture screenshot")
            return real_send(method, params, **kwargs)

        def no_fallback(**_kwargs):
            raise AssertionError("page.screenshot() was used instead of trying the capture again")

        monkeypatch.setattr(session, "send", send)
        monkeypatch.setattr(browser.page, "screenshot", no_fallback)
        again = browser._capture.png()
        assert answers == [] and browser._capture._session is session
    assert pixels(again) == pixels(expected)


def test_png_size_reads_the_header_and_refuses_other_bytes():
    assert png_size(png()) == (40, 25)
    for bad in (b"", b"GIF89a" + bytes(30), png()[:20]):
        with pytest.raises(ValueError, match="not a PNG image"):
            png_size(bad)


# -- evidence crops decoded ahead -------------------------------------------------------------------------------


def shot(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 200), colour).save(out, "PNG")
    return out.getvalue()


def test_a_crop_decoded_ahead_is_the_crop_of_its_own_screenshot(tmp_path):
    """The decode started while the action runs serves only a crop of that same screenshot: a crop of another one
    (a step whose decode ahead was skipped) decodes its own, and a screenshot that does not decode is reported."""
    from tracer.evidence import EvidenceWriter, render_crop

    red, blue = shot((255, 0, 0)), shot((0, 0, 255))
    for index in range(3):
        (tmp_path / "steps" / f"{index:04d}").mkdir(parents=True)  # the run writer makes the step's folder
    writer = EvidenceWriter(tmp_path)
    writer.decode_ahead(red)
    first = writer.submit(0, red, (300, 200), (150, 100), 1.0, None)
    writer.decode_ahead(red)
    second = writer.submit(1, blue, (300, 200), (150, 100), 1.0, None)  # not the one decoded ahead
    writer.decode_ahead(b"\x89PNG broken")
    third = writer.submit(2, b"\x89PNG broken", (300, 200), (150, 100), 1.0, None)
    errors = writer.close()
    assert (tmp_path / first.crop).read_bytes() == render_crop(red, first.box, first.point)
    assert (tmp_path / second.crop).read_bytes() == render_crop(blue, second.box, second.point)
    with Image.open(tmp_path / second.crop) as crop:
        r, g, b = crop.convert("RGB").getpixel((2, 2))  # type: ignore[misc]
    assert b > 200 and r < 50
    assert not (tmp_path / third.crop).exists() and len(errors) == 1 and errors[0].startswith(third.crop)


# -- the writer thread ------------------------------------------------------------------------------------------


def test_background_writes_are_all_on_disk_after_finish(tmp_path):
    runs = tmp_path / "runs"
    writer = RunWriter.create(runs, record("20261126-000000-bg"))
    shots = {i: png(i * 10) for i in range(6)}
    for i, shot in shots.items():
        writer.write_screenshot(i, shot, wait=False)
        written = writer.write_step(step(i))
        assert (writer.run_dir / "steps" / f"{i:04d}" / "screenshot.png").read_bytes() == shot  # before the return
        assert written.index == i
        writer.save(wait=False)
    writer.finish(status=RunStatus.succeeded, end_reason="done")
    run_dir = writer.run_dir
    assert [s.index for s in read_steps(run_dir)] == list(range(6))
    assert read_run(run_dir).steps == 6 and read_run(run_dir).status is RunStatus.succeeded
    assert {i: (run_dir / s.screenshot).read_bytes() for i, s in enumerate(read_steps(run_dir))} == shots
    assert list(run_dir.rglob("*.tmp")) == []
    index = RunIndex(runs)
    try:
        [row] = index.runs()
        assert (row.steps, row.status) == (6, RunStatus.succeeded)
        assert len(index.steps(row.run_id)) == 6
    finally:
        index.close()


def test_a_failed_background_write_stops_the_later_ones_and_is_raised_once(tmp_path):
    writer = RunWriter.create(tmp_path / "runs", record("20261126-000000-fail"), indexed=False)
    writer.write_screenshot(0, png(), wait=False)
    writer.write_step(step(0))
    (writer.step_dir(1) / "screenshot.png").mkdir()  # replacing a folder with a file fails
    writer.write_screenshot(1, png(), wait=False)
    with pytest.raises(OSError):
        writer.write_step(step(1))  # the line of a step whose screenshot failed is not written
    record_ = writer.finish(status=RunStatus.failed, end_reason="harness error")  # reported already: no raise
    assert record_.steps == 1
    assert [s.index for s in read_steps(writer.run_dir)] == [0]
    assert read_run(writer.run_dir).status is RunStatus.failed


def test_finish_raises_a_failed_write_nobody_waited_for(tmp_path):
    writer = RunWriter.create(tmp_path / "runs", record("20261126-000000-late"), indexed=False)
    (writer.step_dir(0) / "screenshot.png").mkdir()
    writer.write_screenshot(0, png(), wait=False)
    with pytest.raises(OSError):
        writer.finish(status=RunStatus.succeeded, end_reason="done")
    assert read_run(writer.run_dir).status is RunStatus.succeeded  # run.json is still written


KILLED = r"""
import sys
from pathlib import Path
from tracer.store import RunWriter
from tests.tracer.test_crash_recovery import png, record, step
writer = RunWriter.create(Path(sys.argv[1]), record("20261126-000000-killed"))
for i in range(4):
    writer.write_screenshot(i, png(i * 30), wait=False)
    writer.write_step(step(i))
    writer.save(wait=False)
writer.write_screenshot(4, png(200), wait=False)  # pending, never announced
sys.stdout.write("announced 4\n"); sys.stdout.flush(); sys.stdin.readline()
"""


def test_a_killed_writer_keeps_every_announced_step(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(runs)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "announced 4\n"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_dir = runs / "20261126-000000-killed"
    steps = read_steps(run_dir)
    assert [s.index for s in steps] == [0, 1, 2, 3]
    assert [pixels((run_dir / s.screenshot).read_bytes()) for s in steps] == [pixels(png(i * 30)) for i in range(4)]
    assert read_run(run_dir).status is RunStatus.interrupted


TASK = """\
name: writer-probe
goal: Click twice and finish.
target: {start_url: "http://fake.invalid/"}
limits: {max_steps: 5}
script:
  - {action: left_click, coordinate: [500, 500]}
  - {action: left_click, coordinate: [100, 900]}
  - {action: terminate, status: success}
"""


def test_a_step_is_on_disk_when_it_is_announced(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text(textwrap.dedent(TASK), encoding="utf-8")
    seen: list[tuple[int, bool, int]] = []

    def check(event: StepRecorded) -> None:
        run_dir = tmp_path / "runs" / event.run_id
        lines = (run_dir / "steps.jsonl").read_bytes().count(b"\n")
        seen.append((event.step.index, (run_dir / event.step.screenshot).is_file(), lines))

    hooks = Hooks()
    hooks.on(StepRecorded, check)
    result = run_task(load_task(path), runs_dir=tmp_path / "runs", executor=FakeExecutor(), hooks=hooks)
    assert result.status is RunStatus.succeeded
    assert seen == [(0, True, 1), (1, True, 2), (2, True, 3)]
    assert read_run(result.run_dir).steps == 3
    assert [s.evidence is not None for s in read_steps(result.run_dir)] == [True, True, False]
    for s in read_steps(result.run_dir)[:2]:
        assert s.evidence is not None and (result.run_dir / s.evidence.crop).is_file()
