"""The OCR panel's data without a browser: each step's OCR status, search bounds, and the graph's mismatch mark."""

from __future__ import annotations

from pathlib import Path

from replays.viewer.graph_svg import graph_svg
from replays.viewer.ocr_panel import MAX_HITS, search, step_verdicts, step_view
from tests.replays.test_graph_svg import run_record, step
from tools.ocr import OcrLine
from tracer.graph import run_graph
from tracer.ocr_files import OCR_DIR, OcrIndex, OcrStepFile, OcrStepStatus, write_ocr_index, write_ocr_step
from tracer.schema import ConsistencyCheck
from tracer.secrets import Scrubber

MISMATCH = ConsistencyCheck(verdict="mismatch", claimed=["Orders"], observed={"ocr_under": "New product"}, reason="r")


def ocr_file(index: int, *texts: str, verdict: ConsistencyCheck | None = None) -> OcrStepFile:
    lines = [OcrLine(text=t, box=(0, 20 * n, 50, 20 * n + 15), score=0.9) for n, t in enumerate(texts)]
    return OcrStepFile(
        step=index,
        screenshot=f"steps/{index:04d}/screenshot.png",
        engine="fake",
        size=(10, 10),
        ms=1.0,
        lines=lines,
        consistency=verdict,
    )


def test_each_steps_status_says_why_there_are_no_lines(tmp_path: Path) -> None:
    steps = [step(i) for i in range(5)]
    assert step_view(tmp_path, steps[0], 0, None).status == "off"
    write_ocr_step(tmp_path, ocr_file(0, "Sign in"), Scrubber([]))
    (tmp_path / OCR_DIR / "step-0001.json").write_text("{not json")
    index = OcrIndex(
        engine="fake",
        steps_setting="all",
        steps={
            2: OcrStepStatus(status="error", reason="engine failed: boom"),
            3: OcrStepStatus(status="skipped", reason="not acting"),
        },
    )
    write_ocr_index(tmp_path, index)
    done = step_view(tmp_path, steps[0], 0, index)
    assert done.status == "done" and [line.text for line in done.lines] == ["Sign in"]
    damaged = step_view(tmp_path, steps[1], 1, index)
    assert damaged.status == "not_done" and damaged.lines == [] and "damaged" in (damaged.reason or "")
    assert (step_view(tmp_path, steps[2], 2, index).status, step_view(tmp_path, steps[2], 2, index).reason) == (
        "error",
        "engine failed: boom",
    )
    assert step_view(tmp_path, steps[3], 3, index).status == "skipped"
    assert step_view(tmp_path, steps[4], 4, None).reason == "not read yet"


def test_search_is_case_insensitive_and_bounded(tmp_path: Path) -> None:
    count = MAX_HITS + 5
    steps = [step(i) for i in range(count)]
    for i in range(count):
        write_ocr_step(tmp_path, ocr_file(i, "Save draft", "PUBLISH" if i % 2 == 0 else "Orders", "publish now"), Scrubber([]))
    found = search(tmp_path, steps[:10], "Publish")
    assert [(h.step, h.lines) for h in found.hits] == [(i, [1, 2] if i % 2 == 0 else [2]) for i in range(10)]
    many = search(tmp_path, steps, "draft")
    assert len(many.hits) == MAX_HITS and many.truncated


def test_a_mismatch_from_ocr_is_marked_on_its_graph_card(tmp_path: Path) -> None:
    steps = [step(0), step(1), step(2, consistency=MISMATCH)]  # step 2: the step's own verdict
    write_ocr_step(tmp_path, ocr_file(1, "New product", verdict=MISMATCH), Scrubber([]))  # step 1: OCR's
    verdicts = step_verdicts(tmp_path, steps)
    assert sorted(verdicts) == [1, 2] and {v.verdict for v in verdicts.values()} == {"mismatch"}
    svg = graph_svg(run_graph(run_record(), steps), mismatched={1})
    for i in (1, 2):
        card = svg.split(f'id="graph-step-{i}"')[0].rsplit("<a ", 1)[1]
        assert "mismatch" in card.split('"')[1], card[:120]
    assert "≠" in svg and "not what the reasoning named" in svg
    first = svg.split('id="graph-step-0"')[0].rsplit("<a ", 1)[1]
    assert "mismatch" not in first
