"""Sharing a run: `glassbox export html` writes one file that opens from disk in real Chromium with no request
leaving it and shows every step; `glassbox export gif` writes one frame per step with the click marked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from replays.share_gif import MARKER, caption_height, ring_radius
from tests.conftest import ROOT, copy_bundled_run
from tests.servers import LocalServer, QuietHandler
from tracer import read_steps

HOSTILE = (
    'The form is open. <script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    '</pre><a href="http://127.0.0.1:1/">click</a> & done'
)
LEFTOVER_SECRET = "hunter2-leftover-value"
CONFIDENCES = [0.93, 0.33, 0.62]  # steps 0, 1, 2 (then unknown): the three bands and "unknown"


def glassbox(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def shared_run(bundled_run, tmp_path_factory) -> Path:
    """The bundled run with model-like confidences, a hostile reasoning on step 3 and a label on step 1."""
    runs = tmp_path_factory.mktemp("share") / "runs"
    result = copy_bundled_run(bundled_run, runs)
    run_dir = result.run_dir
    lines = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text(encoding="utf-8").splitlines()]
    for line, conf in zip(lines, CONFIDENCES, strict=False):
        line["confidence"], line["confidence_reason"] = conf, None
    lines[3]["reasoning"] = HOSTILE
    (run_dir / "steps.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    label = {
        "op": "add",
        "id": 7,
        "step": 1,
        "verdict": "wrong",
        "correction": {"action": "left_click", "coordinate": [500, 548]},
    }
    (run_dir / "labels.jsonl").write_text(json.dumps({**label, "created_at": "2026-11-26T16:00:00Z"}) + "\n", encoding="utf-8")
    return run_dir


class CountingServer(LocalServer):
    """A real HTTP server on 127.0.0.1 that counts what reaches it: proof that nothing left the page."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

        self.hits = hits
        super().__init__(Handler)


@pytest.fixture
def offline_page(chromium) -> Iterator[tuple[object, list[str]]]:
    """A Chromium page that records every request it makes and aborts any that is not the file itself."""
    from playwright.sync_api import sync_playwright

    from tools.chromium import find_chromium

    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(find_chromium()))
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.on("request", lambda r: requests.append(r.url))
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort())
        try:
            yield page, requests
        finally:
            browser.close()


def test_html_opens_from_disk_with_no_request_and_shows_every_step(shared_run: Path, offline_page, tmp_path: Path) -> None:
    out = tmp_path / "run.html"
    done = glassbox("export", "html", str(shared_run), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    steps = read_steps(shared_run)
    assert f"wrote {out}" in done.stdout and f"{len(steps)} steps" in done.stdout and "KB" in done.stdout

    page, requests = offline_page
    url = out.resolve().as_uri()
    page.goto(url)
    # Every step is there and can be seen, with its reasoning and confidence.
    sections = page.locator("section.step")
    assert sections.count() == len(steps)
    assert page.locator("a.film").count() == len(steps)
    for i in range(len(steps)):
        section = page.locator(f"#step-{i}")
        section.scroll_into_view_if_needed()
        assert section.is_visible()
        assert page.locator(f"#step-{i} img").evaluate("img => img.complete && img.naturalWidth > 0")
    assert steps[0].reasoning and page.locator("#step-0 pre.reasoning").inner_text() == steps[0].reasoning
    badge = page.locator("#step-1 .conf")
    assert badge.is_visible() and badge.inner_text() == "0.33 low"
    assert "conf-low" in (badge.get_attribute("class") or "")
    assert page.locator("#step-0 .conf").inner_text() == "0.93 high"
    assert page.locator("#step-2 .conf").inner_text() == "0.62 medium"
    assert page.locator("#step-4 .conf").inner_text() == "confidence unknown"
    # The label and its fix point, the click overlay and the checks.
    assert "labelled wrong → left_click (500, 548)" in page.locator("#step-1 .badges").inner_text()
    assert page.locator("#step-1 svg circle.fix").count() == 1
    assert page.locator("#step-0 svg circle.exec").count() == 1
    assert page.locator("#checks li").count() == 2 and "✓ passed" in page.locator("#checks").inner_text()
    # Hostile reasoning stays text: no script ran, no element came from it.
    assert page.locator("#step-3 pre.reasoning").inner_text() == HOSTILE
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#step-3 pre.reasoning *").count() == 0
    # The keyboard moves between steps.
    page.evaluate("window.scrollTo(0, 0)")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert "current" in (page.locator("#step-2").get_attribute("class") or "")
    assert "current" in (page.locator('a.film[data-step="2"]').get_attribute("class") or "")
    assert requests == [url]


def test_the_files_policy_blocks_a_request_even_from_a_script(shared_run: Path, offline_page, tmp_path: Path) -> None:
    """Belt and braces: were some markup ever to get in, the file's CSP still lets nothing out."""
    out = tmp_path / "run.html"
    assert glassbox("export", "html", str(shared_run), "--out", str(out), cwd=tmp_path).returncode == 0
    page, _ = offline_page
    page.unroute("**/*")  # let requests through, so only the page's own policy stands in the way
    with CountingServer() as server:
        page.goto(out.resolve().as_uri())
        blocked = page.evaluate(
            """(url) => new Promise((done) => {
                const seen = [];
                document.addEventListener("securitypolicyviolation", (e) => {
                    seen.push(e.violatedDirective);
                    if (e.violatedDirective === "img-src") done(seen.sort());
                });
                const img = document.createElement("img");
                img.src = url + "/leak.png";
                document.body.appendChild(img);
                const s = document.createElement("script");
                s.textContent = "window.__ran = 1";
                document.body.appendChild(s);
            })""",
            server.url,
        )
        fetched = page.evaluate("(url) => fetch(url).then(() => 'sent', () => 'blocked')", server.url + "/fetch")
        assert fetched == "blocked"
        assert blocked == ["img-src", "script-src-elem"]
        assert page.evaluate("window.__ran") is None
        assert server.hits == []  # Chromium reports the blocked image as a request; none reached the server


def test_html_keeps_a_leftover_secret_out_and_cuts_long_runs(shared_run: Path, tmp_path: Path) -> None:
    """A run folder from elsewhere may still hold a secret's value in run.json: the export masks it everywhere."""
    run_dir = tmp_path / "runs" / shared_run.name
    run_dir.parent.mkdir()
    shutil.copytree(shared_run, run_dir)
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    record["task"]["inputs"]["password"]["value"] = LEFTOVER_SECRET
    record["end_reason"] = f"typed {LEFTOVER_SECRET} and gave up"
    (run_dir / "run.json").write_text(json.dumps(record), encoding="utf-8")
    lines = (run_dir / "steps.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["reasoning"] = f"the password is {LEFTOVER_SECRET}"
    (run_dir / "steps.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n", encoding="utf-8")

    out = tmp_path / "cut.html"
    done = glassbox(
        "export",
        "html",
        run_dir.name[:-2],
        "--runs-dir",
        str(run_dir.parent),
        "--out",
        str(out),
        "--max-steps",
        "3",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert f"3 of {len(lines)} steps (--max-steps)" in done.stdout
    html = out.read_text(encoding="utf-8")
    assert html.count('<section class="step"') == 3
    assert LEFTOVER_SECRET not in html and "hunter2-left" not in html
    assert "the password is ●●●●" in html


def test_missing_screenshots_get_a_placeholder_and_a_warning(shared_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / shared_run.name
    shutil.copytree(shared_run, run_dir)
    steps = read_steps(run_dir)
    (run_dir / steps[2].screenshot).unlink()
    (run_dir / steps[5].screenshot).write_bytes(b"not an image")
    lines = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text(encoding="utf-8").splitlines()]
    lines[7]["screenshot"] = "../../../../../../etc/hostname"  # a crafted record: nothing outside the folder is read
    lines[0]["coordinate"]["device_scale_factor"] = float("inf")  # and a point that cannot be drawn is left out
    (run_dir / "steps.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    steps = read_steps(run_dir)
    assert len(steps) == len(lines)
    out = tmp_path / "run.html"
    done = glassbox("export", "html", str(run_dir), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 screenshot(s) not available (steps 2, 5, 7): a placeholder is shown" in " ".join(done.stderr.split())
    assert "is outside the run folder" in done.stderr
    html = out.read_text(encoding="utf-8")
    assert html.count('class="missing"') == 3 and f"{steps[2].screenshot} is missing" in html
    assert '<circle class="exec"' not in html.split('id="step-1"')[0].split('id="step-0"')[1]
    gif = tmp_path / "run.gif"
    done = glassbox("export", "gif", str(run_dir), "--out", str(gif), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with Image.open(gif) as image:
        assert image.n_frames == len(steps)


def test_gif_has_a_frame_per_step_with_the_click_marked(shared_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.gif"
    width = 640
    args = ["--runs-dir", str(shared_run.parent), "--out", str(out), "--width", str(width), "--frame-ms", "400"]
    done = glassbox("export", "gif", shared_run.name, *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    steps = read_steps(shared_run)
    assert f"{len(steps)} frames" in done.stdout
    first = steps[0]
    assert first.coordinate is not None
    shot_w, shot_h = first.screenshot_size
    scale = width / shot_w
    expected = (width, round(shot_h * scale) + caption_height(width))
    with Image.open(out) as image:
        assert image.n_frames == len(steps)
        assert image.size == expected
        assert image.info["duration"] == 400
        image.seek(0)
        rgb = image.convert("RGB")
    x = first.coordinate.css[0] * first.device_scale_factor * scale
    y = first.coordinate.css[1] * first.device_scale_factor * scale
    ring = ring_radius(width)
    on_ring = [rgb.getpixel((round(x + dx), round(y + dy))) for dx, dy in ((ring, 0), (-ring, 0), (0, ring), (0, -ring))]
    assert on_ring == [MARKER] * 4
    assert rgb.getpixel((round(x), round(y))) != MARKER  # a ring: the clicked spot itself stays visible


@pytest.mark.parametrize("kind", ["html", "gif"])
def test_usage_errors_exit_2_and_write_nothing(shared_run: Path, tmp_path: Path, kind: str) -> None:
    runs = str(shared_run.parent)
    done = glassbox("export", kind, "no-such-run", "--runs-dir", runs, "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert done.returncode == 2 and "no run 'no-such-run'" in done.stderr
    missing_dir = tmp_path / "nowhere" / f"run.{kind}"
    done = glassbox("export", kind, str(shared_run), "--out", str(missing_dir), cwd=tmp_path)
    assert done.returncode == 2
    assert f"the folder {missing_dir.parent} does not exist" in " ".join(done.stderr.split())
    done = glassbox("export", kind, str(shared_run), "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "is a folder" in done.stderr
    done = glassbox("export", kind, str(shared_run), "--out", str(tmp_path / "x"), "--max-steps", "0", cwd=tmp_path)
    assert done.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "made"),
    [(["graph", "RUN"], False), (["export", "playwright", "RUN"], True), (["export", "feedback", "-f", "sft"], True)],
)
def test_every_out_is_checked_before_anything_is_written(shared_run: Path, tmp_path: Path, command, made) -> None:
    """A folder as --out, or a missing folder for graph, was a Python traceback with exit 1."""
    args = [str(shared_run) if a == "RUN" else a for a in command] + ["--runs-dir", str(shared_run.parent)]
    done = glassbox(*args, "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and f"--out {tmp_path} is a folder: give a file name" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    deeper = tmp_path / "new" / "out.txt"
    done = glassbox(*args, "--out", str(deeper), cwd=tmp_path)
    if made:  # these exports make the folders they need
        assert done.returncode == 0 and deeper.is_file(), done.stderr
    else:
        assert done.returncode == 2 and f"the folder {deeper.parent} does not exist" in " ".join(done.stderr.split())


def test_run_is_named_by_its_printed_folder_its_id_or_a_prefix(shared_run: Path, tmp_path: Path) -> None:
    """RUN as every command takes it; each form exports the same bytes."""
    cwd = shared_run.parent.parent  # where `glassbox run` would have printed runs/<id>
    forms = {"printed": f"runs/{shared_run.name}/", "id": shared_run.name, "prefix": shared_run.name[:-3]}
    written = {}
    for kind, ref in forms.items():
        out = tmp_path / f"{kind}.gif"
        done = glassbox("export", "gif", ref, "--out", str(out), "--max-steps", "2", "--width", "320", cwd=cwd)
        assert done.returncode == 0, (kind, done.stderr)
        written[kind] = out.read_bytes()
    assert written["printed"] == written["id"] == written["prefix"]
