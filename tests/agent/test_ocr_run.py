"""OCR during real runs (Chromium, the shop, rapidocr): files per step, secrets masked, mismatches flagged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageChops

from agent import load_task, run_task
from agent.ocr_worker import ocr_wanted
from tests.conftest import TASKS, require_chromium
from tools.ocr import OcrUnavailable, ocr_available
from tracer import RunStatus, read_run, read_steps
from tracer.graph import run_graph
from tracer.ocr_files import OCR_DIR, mismatched_steps, read_ocr_index, read_ocr_step
from tracer.secrets import MASK

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SECRET = "Zebra-tulip-4821-Quartz"
LOGIN = [
    {"action": "left_click", "target": {"label": "Username"}},
    {"action": "type", "text": "{username}"},
    {"action": "left_click", "target": {"label": "Password"}},
    {"action": "type", "text": "{password}"},
]


def needs_ocr() -> None:
    require_chromium()
    problem = ocr_available()
    if problem is not None:
        pytest.skip(f"needs the ocr extra: {problem}")


def variant(folder: Path, name: str, edit) -> Path:
    data = yaml.safe_load((TASKS / name).read_text(encoding="utf-8"))
    for spec in data.get("files", {}).values():
        spec["path"] = shutil.copy(TASKS / spec["path"], folder)
    data["checks"] = []
    edit(data)
    path = folder / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ocr_run(tmp_path_factory: pytest.TempPathFactory):
    """Sign in, open Products (its note names it), open New product (its note names Orders), type a secret
    description, click elsewhere so the next screenshot shows it, end. OCR on for every step."""
    needs_ocr()
    folder = tmp_path_factory.mktemp("ocr-run")

    def edit(data: dict) -> None:
        data["inputs"]["description"] = {"value": SECRET, "secret": True}
        data["ocr"] = {"enabled": True, "steps": "all", "catch_up_s": 600}
        data["script"] = [
            *LOGIN,
            {"action": "left_click", "target": {"role": "button", "name": "Sign in"}, "note": "Sign in"},
            {"action": "left_click", "target": {"role": "link", "name": "Products"}, "note": 'Click "Products"'},
            {"action": "left_click", "target": {"role": "link", "name": "New product"}, "note": "Click the 'Orders' link"},
            {"action": "left_click", "target": {"label": "Description"}},
            {"action": "type", "text": "{description}"},
            {"action": "left_click", "target": {"label": "Product name"}, "note": "Focus the product name field"},
            {"action": "terminate", "status": "success"},
        ]

    task = load_task(variant(folder, "publish_product.yaml", edit))
    result = run_task(task, runs_dir=folder / "runs")
    assert result.status is RunStatus.succeeded, result.end_reason
    return result


def test_every_step_has_its_ocr_file_and_the_index_says_so(ocr_run) -> None:
    steps = read_steps(ocr_run.run_dir)
    index = read_ocr_index(ocr_run.run_dir)
    assert index is not None and index.not_done == 0 and index.caught_up_after_end_s is not None
    assert sorted(index.steps) == [s.index for s in steps]
    assert {s.status for s in index.steps.values()} == {"done"}
    from tools.ocr import installed_backend

    assert index.runtime is not None and index.runtime.split()[0] == installed_backend()  # "openvino 2026.4.1"
    sign_in = read_ocr_step(ocr_run.run_dir, 4)
    assert sign_in is not None and sign_in.point is not None
    assert sign_in.point.under is not None and sign_in.point.under.text == "Sign in"
    assert sign_in.point.description.startswith("clicked 'Sign in'")
    # each file says how its screenshot was read; typing into a field changes a small area: read partly
    reads = {i: read_ocr_step(ocr_run.run_dir, i) for i in index.steps}
    assert all(f is not None and f.read is not None for f in reads.values())
    assert sum(index.reads.values()) == len(steps) and index.reads["full"] >= 1 and index.reads["partial"] >= 1
    assert reads[0] is not None and reads[0].read is not None and reads[0].read.mode == "full"
    typed = reads[2]  # "admin" typed into the focused username field
    assert typed is not None and typed.read is not None and typed.read.mode == "partial", typed.read
    assert typed.read.base == 1 and typed.read.crops and "admin" in [line.text for line in typed.lines]


def test_a_click_on_another_link_than_the_note_names_is_a_mismatch(ocr_run) -> None:
    steps = read_steps(ocr_run.run_dir)
    products, new_product = steps[5], steps[6]
    # recorded with the step, from the DOM element under the point
    assert products.consistency is not None and products.consistency.verdict == "match"
    assert new_product.consistency is not None and new_product.consistency.verdict == "mismatch"
    assert new_product.consistency.claimed == ["Orders"]
    # and from OCR of the screenshot, once the worker caught up
    ocr = read_ocr_step(ocr_run.run_dir, 6)
    assert ocr is not None and ocr.consistency is not None and ocr.consistency.verdict == "mismatch"
    assert ocr.consistency.observed["ocr_under"] == "New product"
    matched = read_ocr_step(ocr_run.run_dir, 5)
    assert matched is not None and matched.consistency is not None and matched.consistency.verdict == "match"
    assert mismatched_steps(ocr_run.run_dir, steps) == [6]


def test_a_secret_typed_into_a_field_never_reaches_the_ocr_files(ocr_run) -> None:
    files = sorted((ocr_run.run_dir / OCR_DIR).iterdir())
    assert len(files) > 5
    fragments = {SECRET[i : i + 8] for i in range(len(SECRET) - 7)}
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not [f for f in fragments if f in text], path.name
    # The typed field changed the screen (so this test can fail), but the field draws its
    # text as discs (tools.browser: a secret's field): no text of it is there to read, masked or not. The scrubber
    # that masks a secret OCR does read (one a page echoes) is tested in tests/tools/test_ocr.py.
    before, after = (Image.open(ocr_run.run_dir / "steps" / f"{i:04d}" / "screenshot.png").convert("RGB") for i in (8, 9))
    assert ImageChops.difference(before, after).getbbox() is not None  # the typing drew something in the field
    after_typing = read_ocr_step(ocr_run.run_dir, 9)
    assert after_typing is not None and after_typing.lines
    assert not [line for line in after_typing.lines if MASK in line.text or "Zebra" in line.text]


def test_ocr_is_off_for_a_script_by_default_and_writes_nothing(bundled_run) -> None:
    runs, result = bundled_run
    assert not (result.run_dir / OCR_DIR).exists()
    task = load_task(TASKS / "publish_product.yaml")
    assert task.ocr.enabled == "auto" and not ocr_wanted(task, "script")
    task.ocr.enabled = False
    assert not ocr_wanted(task, "openai")
    task.ocr.enabled, task.ocr.engine = True, "nope"
    with pytest.raises(OcrUnavailable, match="unknown OCR engine 'nope'"):
        ocr_wanted(task, "script")


def test_ocr_reads_the_chinese_product_name(tmp_path: Path) -> None:
    needs_ocr()

    def edit(data: dict) -> None:
        data["ocr"] = {"enabled": True, "steps": "acting", "catch_up_s": 600}
        data["script"] = [*data["script"][:9], {"action": "terminate", "status": "success"}]

    result = run_task(load_task(variant(tmp_path, "publish_product_zh.yaml", edit)), runs_dir=tmp_path / "runs")
    assert result.status is RunStatus.succeeded, result.end_reason
    last = read_ocr_step(result.run_dir, result.steps - 1)
    assert last is not None
    [name] = [line for line in last.lines if line.text == "无线蓝牙耳机"]
    left, top, right, bottom = name.box
    assert right - left > 40 and 10 < bottom - top < 60


def test_on_mismatch_stop_ends_the_run_before_the_click(tmp_path: Path) -> None:
    needs_ocr()

    def edit(data: dict) -> None:
        data["ocr"] = {"enabled": True, "steps": "acting", "catch_up_s": 600}
        data["policy"] = {"on_mismatch": "stop"}
        data["script"] = [
            *LOGIN,
            {"action": "left_click", "target": {"role": "button", "name": "Sign in"}, "note": 'Click "Register"'},
            {"action": "terminate", "status": "success"},
        ]

    result = run_task(load_task(variant(tmp_path, "publish_product.yaml", edit)), runs_dir=tmp_path / "runs")
    assert result.status is RunStatus.failed
    assert result.end_reason.startswith("stopped at step 4 on a mismatch: the reasoning names 'Register'")
    held = read_steps(result.run_dir)[-1]
    assert held.index == 4 and held.outcome == "skipped" and held.gate is not None and held.gate.who == "consistency"
    # The verdict that stopped it is the step's own, so the terminal, viewer, graph and eval count it.
    assert held.consistency is not None and held.consistency.verdict == "mismatch", held.consistency
    assert held.consistency.claimed == ["Register"]
    index = read_ocr_index(result.run_dir)
    assert index is not None and index.mismatches == [4], index
    graph = run_graph(read_run(result.run_dir), read_steps(result.run_dir))
    held_label = next(d["label"] for _, d in graph.nodes(data=True) if d["kind"] == "action" and d["step"] == 4)
    assert held_label.startswith("stop: left_click ("), held_label  # what was proposed, not "?"


def test_on_mismatch_stop_waits_for_a_screenshot_written_slowly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The screenshot is written in the background; on a busy machine (CI, 2 cores) it was not yet there when the
    gate read it, the check failed, and the run went on past the mismatch it was told to stop at."""
    needs_ocr()
    import time

    import tracer.store

    write = tracer.store.atomic_write

    def slow_write(path: Path, data: bytes) -> None:
        if path.name == "screenshot.png":
            time.sleep(0.5)
        write(path, data)

    monkeypatch.setattr(tracer.store, "atomic_write", slow_write)

    def edit(data: dict) -> None:
        data["ocr"] = {"enabled": True, "steps": "acting", "catch_up_s": 600}
        data["policy"] = {"on_mismatch": "stop"}
        data["script"] = [
            {"action": "left_click", "target": {"role": "button", "name": "Sign in"}, "note": 'Click "Register"'},
            {"action": "terminate", "status": "success"},
        ]

    result = run_task(load_task(variant(tmp_path, "publish_product.yaml", edit)), runs_dir=tmp_path / "runs")
    assert result.status is RunStatus.failed, result.end_reason
    assert result.end_reason.startswith("stopped at step 0 on a mismatch: the reasoning names 'Register'")


def test_ask_on_mismatch_holds_the_step_for_a_person(tmp_path: Path) -> None:
    needs_ocr()
    import threading
    from datetime import datetime, timezone

    from agent.approval import ApprovalAnswer, give_answer, read_pending

    def edit(data: dict) -> None:
        data["policy"] = {"on_mismatch": "ask", "approval_timeout_s": 300}  # ocr: auto turns on for it
        data["script"] = [
            *LOGIN,
            {"action": "left_click", "target": {"role": "button", "name": "Sign in"}, "note": 'Click "Register"'},
            {"action": "terminate", "status": "success"},
        ]

    runs = tmp_path / "runs"
    seen: list[str] = []

    def person() -> None:  # answers through the file channel, as the viewer does
        while not seen:
            for run_dir in runs.iterdir() if runs.is_dir() else []:
                pending = read_pending(run_dir) if run_dir.is_dir() else None
                if pending is not None:
                    seen.append(f"{pending.step}:{pending.why}:{pending.why_text}")
                    answer = ApprovalAnswer(id=pending.id, choice="stop", by="viewer", answered_at=datetime.now(timezone.utc))
                    give_answer(run_dir, answer)
            threading.Event().wait(0.05)

    threading.Thread(target=person, daemon=True).start()
    result = run_task(load_task(variant(tmp_path, "publish_product.yaml", edit)), runs_dir=runs)
    assert seen and seen[0].startswith("4:mismatch:mismatch: the reasoning names 'Register'")
    assert result.status is RunStatus.failed and "stopped by a person at step 4" in result.end_reason
    held = read_steps(result.run_dir)[4]
    assert held.outcome == "skipped" and held.gate is not None and (held.gate.who, held.gate.decision) == ("approval", "stop")


def test_ask_on_mismatch_cannot_go_with_no_ocr(tmp_path: Path) -> None:
    from tests.conftest import glassbox_in_process

    done = glassbox_in_process("run", str(TASKS / "publish_product.yaml"), "--ask-on-mismatch", "--no-ocr")
    assert done.returncode == 2 and "--ask-on-mismatch reads the screen with OCR" in done.stderr


def test_on_mismatch_stop_also_weighs_the_field_under_the_point_before_the_click(tmp_path: Path) -> None:
    """An empty field shows no text for OCR to read under the point; its label is the browser's to tell, before
    the click as after it."""
    needs_ocr()

    def edit(data: dict) -> None:
        data["ocr"] = {"enabled": True, "steps": "acting", "catch_up_s": 600}
        data["policy"] = {"on_mismatch": "stop"}
        data["script"] = [
            {"action": "left_click", "target": {"label": "Password"}, "note": 'Click "Username"'},
            {"action": "terminate", "status": "success"},
        ]

    result = run_task(load_task(variant(tmp_path, "publish_product.yaml", edit)), runs_dir=tmp_path / "runs")
    assert result.status is RunStatus.failed, result.end_reason
    assert result.end_reason.startswith("stopped at step 0 on a mismatch: the reasoning names 'Username'"), result.end_reason
    held = read_steps(result.run_dir)[0]
    assert held.consistency is not None and held.consistency.observed.get("element_label") == "Password", held.consistency
