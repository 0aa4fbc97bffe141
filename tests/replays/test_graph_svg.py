"""The decision graph as SVG: step cards wrapped into rows, coloured by the confidence scale, cut by display width,
marked for labels / corrections / evidence, and every recorded value escaped."""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from replays import confidence
from replays.viewer.graph_svg import CARD_W, MAX_WIDTH, cut_to_width, display_width, graph_svg, wrap_to_width
from tracer import RunRecord, RunStatus, StepRecord, StepTimings
from tracer.graph import run_graph
from tracer.schema import Evidence

SVG = "{http://www.w3.org/2000/svg}"


def run_record(run_id: str = "r1") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        task_name="t",
        task_file=None,
        task={},
        policy="qwen3vl",
        status=RunStatus.succeeded,
        end_reason="done",
        started_at=datetime.now(timezone.utc),
        pid=os.getpid(),
        host=socket.gethostname(),
    )


def step(index: int, confidence: float | None = 0.9, reasoning: str = "r", **extra) -> StepRecord:
    return StepRecord(
        index=index,
        started_at=datetime.now(timezone.utc),
        timings=StepTimings(),
        url="http://127.0.0.1/shop",
        title=None,
        screenshot=f"steps/{index:04d}/screenshot.png",
        screenshot_size=(10, 10),
        policy="qwen3vl",
        raw_output="x",
        reasoning=reasoning,
        action={"action": "left_click", "coordinate": [500, 400]},
        confidence=confidence,
        outcome="ok",
        **extra,
    )


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def cards(root: ET.Element) -> dict[int, ET.Element]:
    return {int(a.get("data-step", "-1")): a for a in root.iter(f"{SVG}a") if "gstep" in a.get("class", "")}


def test_21_steps_wrap_into_rows_that_fit_a_1366_px_window() -> None:
    svg = graph_svg(run_graph(run_record(), [step(i) for i in range(21)]))
    root = parse(svg)
    width = int(root.get("width", "0"))
    assert width <= MAX_WIDTH < 1366
    assert (root.get("data-columns"), root.get("data-rows")) == ("6", "4")  # 21 cards and the end: 6 + 6 + 6 + 4
    frames = {i: a.find(f"{SVG}rect") for i, a in cards(root).items()}
    assert sorted(frames) == list(range(21))
    xs = {i: float(f.get("x", "0")) for i, f in frames.items() if f is not None}
    ys = {i: float(f.get("y", "0")) for i, f in frames.items() if f is not None}
    assert all(x + CARD_W <= width for x in xs.values())
    assert len(set(ys.values())) == 4
    assert ys[5] == ys[0] and ys[6] > ys[5] and xs[6] == xs[0]  # step 6 starts the second row at the left
    assert [int(a.get("data-step", "")) for a in cards(root).values()] == list(range(21))  # reading order


def test_cards_are_coloured_by_band_with_the_number_and_word_on_them() -> None:
    values = [0.93, 0.65, 0.2, None]
    root = parse(graph_svg(run_graph(run_record(), [step(i, v) for i, v in enumerate(values)])))
    found = cards(root)
    for i, value in enumerate(values):
        style = confidence.style(value)
        card = found[i]
        assert card.get("data-band") == style.band.value
        reasoning = next(r for r in card.iter(f"{SVG}rect") if r.get("class") == "reasoning")
        assert reasoning.get("fill") == style.colour
        conf = next(t for t in card.iter(f"{SVG}text") if t.get("class") == "conf")
        assert conf.text == (f"{value:.2f} {style.band.value}" if value is not None else "unknown")
        assert conf.get("fill") == style.ink
    assert found[2].get("data-confidence") == "0.2"


def test_cjk_text_is_cut_by_display_width_not_characters() -> None:
    cjk = "商品名の入力欄をクリックして、タイトルを入力する"
    latin = "a" * len(cjk)
    assert display_width(cjk) == 2 * len(cjk)
    assert cut_to_width(latin, 30) == latin  # 24 narrow characters fit in 30 columns; 24 wide ones do not
    assert cut_to_width("a" * 40, 30) == "a" * 29 + "…"
    cut = cut_to_width(cjk, 21)
    assert cut.endswith("…") and display_width(cut) <= 21 and cut.startswith("商品名の入力欄をクリ")
    assert cut_to_width("e\u0301" * 5, 5) == "e\u0301" * 5  # combining accents take no room
    long_cjk = cjk * 3
    root = parse(graph_svg(run_graph(run_record(), [step(0, reasoning=long_cjk), step(1, reasoning=latin[:40])])))
    why = {i: [t.text or "" for t in c.iter(f"{SVG}text") if t.get("class") == "why"] for i, c in cards(root).items()}
    assert len(why[0]) == 2 and all(display_width(line) <= 21 for line in why[0])  # two lines, each within the node
    assert why[0][0] == cjk[:10] and why[0][1].endswith("…") and why[0][1].startswith(cjk[10:19])
    assert why[1] == [latin[:21], latin[21:40]]  # as many Latin characters fit whole on each line
    assert wrap_to_width("open the product form and type the title", 21) == ["open the product form", "and type the title"]
    title = next(cards(root)[0].iter(f"{SVG}title")).text or ""
    assert cjk in title  # the whole reasoning on hover


def test_labels_corrections_and_evidence_are_marked() -> None:
    evidence = Evidence(crop="steps/0001/evidence.webp", box=(0, 0, 5, 5), point=(2, 2), sized_by="fixed")
    steps = [step(0), step(1, evidence=evidence), step(2)]
    root = parse(graph_svg(run_graph(run_record(), steps), verdicts={0: "correct", 2: "wrong"}, corrected={2}))
    found = cards(root)
    assert "labelled-correct" in (found[0].get("class") or "")
    assert "has-evidence" in (found[1].get("class") or "") and "labelled" not in (found[1].get("class") or "")
    assert {"labelled-wrong", "corrected"} <= set((found[2].get("class") or "").split())
    heads = {i: next(t for t in c.iter(f"{SVG}text") if t.get("class") == "head").text for i, c in found.items()}
    assert heads == {0: "step 0  ✓", 1: "step 1  ◎", 2: "step 2  ✗ ✎"}
    title = next(found[2].iter(f"{SVG}title")).text or ""
    assert "labelled wrong" in title and "corrected by a person" in title


def test_cards_link_to_their_step() -> None:
    root = parse(graph_svg(run_graph(run_record(), [step(0), step(1)]), link="/runs/r1#step-{step}"))
    assert {i: (a.get("href"), a.get("id")) for i, a in cards(root).items()} == {
        0: ("/runs/r1#step-0", "graph-step-0"),
        1: ("/runs/r1#step-1", "graph-step-1"),
    }


def test_every_recorded_value_is_escaped() -> None:
    hostile = '"><script>alert(1)</script><svg onload=alert(2)>&amp;'
    run = run_record().model_copy(update={"end_reason": hostile, "status": RunStatus.failed})
    steps = [
        step(0, reasoning=hostile).model_copy(update={"url": hostile}),
        step(1, reasoning="ok").model_copy(update={"action": None, "outcome": "error", "error": hostile}),
        step(2, reasoning=hostile).model_copy(update={"action": None, "error": hostile, "error_kind": "parse"}),
    ]
    svg = graph_svg(run_graph(run, steps), link='/runs/"x"#step-{step}', verdicts={0: hostile})
    root = parse(svg)  # no markup got in: still one well-formed SVG
    assert "<svg onload" not in svg and "<script" not in svg
    assert [el.tag for el in root.iter() if el.tag.endswith("script")] == []
    assert all(not k.startswith("on") for el in root.iter() for k in el.attrib)
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}title"))
    assert hostile in texts  # shown as text, whole, on hover
    assert cards(root)[0].get("href") == '/runs/"x"#step-0'


def test_control_characters_in_recorded_text_leave_the_svg_well_formed() -> None:
    """The viewer also serves the graph alone as image/svg+xml: one control character in a model's reasoning (byte
    tokens can decode to any) or a page's error text used to make it an XML error in place of the graph."""
    hostile = "click \x1b[2J the \x00button\x0b \ufffe"
    run = run_record().model_copy(update={"end_reason": "gone\x07", "status": RunStatus.failed})
    steps = [step(0, reasoning=hostile), step(1, reasoning="ok").model_copy(update={"error": "\x08", "outcome": "error"})]
    svg = graph_svg(run_graph(run, steps))
    root = parse(svg)  # ET refuses any character XML 1.0 does not allow
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}title"))
    assert "click \\x1b[2J the \\x00button \\ufffe" in texts  # shown as text (the vertical tab is a space)
