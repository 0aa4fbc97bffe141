"""``glassbox decide``: a model asked about recorded steps, its answer recorded as a counterfactual beside the run and
drawn in its graph; ``--labelled`` counting the clicks that land inside the labelled elements.

The runs are recorded with the script policy on the fake executor (no browser). The served model is a test double on
127.0.0.1 (``RecordedAnswers``: it answers each chat request with the next queued tool call and refuses requests
without the expected key), so the decisions, and so the landings, are known exactly.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from agent import load_task, run_task
from replays.decide import DISC_RADIUS, DecideOptions, correction_box, decide_step, labelled_element, policy_for_run
from replays.labels import Correction, Label, LabelIn, Labels
from replays.viewer import create_viewer
from replays.viewer.graph_svg import graph_svg
from tests.conftest import glassbox_in_process
from tests.replays.test_replay_served import RecordedAnswers
from tools.fake import FakeExecutor, screenshot
from tracer import RunStatus, read_steps
from tracer.decisions import DECISIONS_DIR, read_decisions
from tracer.graph import attach_counterfactuals, load, run_graph
from tracer.ocr_files import OCR_DIR, OcrStepFile, ocr_step_path
from tracer.run_files import read_run

KEY_ENV = "GLASSBOX_TEST_DECIDE_KEY"
MODEL = "decide-double"
CLICKS = [(600, 500), (200, 200), (800, 700)]  # the script's clicks, steps 0..2; step 3 terminates


def record_run(runs: Path, tmp_path: Path) -> Path:
    script = "".join(f"- {{action: left_click, coordinate: [{x}, {y}]}}\n" for x, y in CLICKS)
    script += "- {action: terminate, status: success}\n"
    path = tmp_path / "decide.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: decide-task
        goal: Open the third tile.
        target: {start_url: "http://fake.invalid/"}
        limits: {max_steps: 10}
        script:
        """)
        + textwrap.indent(script, "  "),
        encoding="utf-8",
    )
    screens = [screenshot(c) for c in ("white", "lightblue", "lightgreen", "khaki", "pink")]
    result = run_task(load_task(path), policy="script", runs_dir=runs, executor=FakeExecutor(screens))
    assert result.status is RunStatus.succeeded, result.end_reason
    return result.run_dir


def click(x: float, y: float) -> dict:
    return {"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [x, y]}}


def served_args(server: RecordedAnswers) -> list[str]:
    return ["--policy", "openai", "--base-url", server.url, "--model", MODEL, "--api-key-env", KEY_ENV]


def snapshot(run_dir: Path) -> dict[str, str]:
    """Every file of the run folder but the ones decide adds, by content hash."""
    return {
        p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.relative_to(run_dir).parts[0] != DECISIONS_DIR
    }


@pytest.fixture
def server():
    key = "sk-test-" + secrets.token_hex(16)  # no 8-character run in common with the model name: it would be masked
    double = RecordedAnswers(key, echo_key=True)
    yield double, key
    double.close()


@pytest.fixture
def script_run(tmp_path) -> tuple[Path, Path]:
    runs = tmp_path / "runs"
    return runs, record_run(runs, tmp_path)


def test_decide_prints_beside_the_original_records_a_counterfactual_and_the_graphs_show_it(script_run, server):
    runs, run_dir = script_run
    double, key = server
    before = snapshot(run_dir)
    double.queue([click(700, 400)])
    args = ["--runs-dir", str(runs), *served_args(double)]
    proc = glassbox_in_process("decide", run_dir.name, "--step", "1", *args, env={KEY_ENV: key})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    recorded_line = next(line for line in lines if line.strip().startswith("recorded "))
    decided_line = next(line for line in lines if line.strip().startswith("decided "))
    assert "left_click" in recorded_line and "grid (200, 200) · px (256, 160)" in recorded_line
    assert "left_click" in decided_line and "grid (700, 400) · px (896, 320)" in decided_line
    assert "attention not computed: a served model returns no attention" in proc.stdout
    # The request carried the step's prompt (rebuilt for a script step) and its screenshot.
    body = double.requests[-1]["body"]
    assert body["temperature"] == 0 and body["model"] == MODEL
    user = body["messages"][1]["content"]
    assert [p["type"] for p in user] == ["image_url", "text"] and "Open the third tile." in user[1]["text"]
    assert "Step 1: left_click at (600, 500)" in user[1]["text"]  # the history before step 1

    [record] = read_decisions(run_dir)
    assert (record.step, record.action, record.coordinate, record.pixel) == (1, "left_click", (700.0, 400.0), (896, 320))
    assert record.prompt_source == "rebuilt" and record.policy == "openai" and record.model == MODEL
    assert record.server == double.url and record.attention_file is None
    assert (run_dir / DECISIONS_DIR / "step-0001.jsonl").is_file()
    assert snapshot(run_dir) == before  # nothing recorded was changed, only decisions/ was added
    assert not [p for p in run_dir.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]

    graph_json = glassbox_in_process("graph", run_dir.name, "--runs-dir", str(runs))
    assert graph_json.returncode == 0, graph_json.stderr
    data = json.loads(graph_json.stdout)
    node = f"cf:1:{record.id}"
    [cf] = [n for n in data["nodes"] if n["id"] == node]
    assert cf["kind"] == "counterfactual" and cf["label"] == "left_click (700, 400)" and cf["model"] == MODEL
    assert {"source": "obs:1", "target": node, "kind": "counterfactual"} in [
        {k: e[k] for k in ("source", "target", "kind")} for e in data["edges"]
    ]

    graphml = glassbox_in_process("graph", run_dir.name, "--runs-dir", str(runs), "--format", "graphml")
    assert graphml.returncode == 0, graphml.stderr
    assert load(graphml.stdout, "graphml").nodes[node]["kind"] == "counterfactual"

    page = TestClient(create_viewer(runs), base_url="http://127.0.0.1").get(f"/runs/{run_dir.name}")
    assert page.status_code == 200
    assert f'data-decision="{record.id}"' in page.text and "counterfactual (decide-double): left_click (700, 400)" in page.text


def test_labelled_json_reports_exactly_which_decisions_land(script_run, server):
    runs, run_dir = script_run
    double, key = server
    labels = Labels(runs)
    run_id = run_dir.name
    labels.add(run_id, 0, LabelIn(verdict="wrong", correction=Correction(coordinate=(600, 500))))
    labels.add(run_id, 1, LabelIn(verdict="wrong", correction=Correction(coordinate=(200, 200))))
    labels.add(run_id, 2, LabelIn(verdict="correct"))
    labels.add(run_id, 3, LabelIn(verdict="correct"))  # terminate: no point, skipped
    # Step 1 was read by OCR: the line under the corrected point, pixels (200..400, 140..180) of 1280x800, is the element.
    (run_dir / OCR_DIR).mkdir()
    ocr = OcrStepFile(
        step=1,
        screenshot="steps/0001/screenshot.png",
        engine="rapidocr",
        size=(1280, 800),
        ms=1.0,
        lines=[{"text": "Tile two", "box": (200, 140, 400, 180), "score": 0.9}],
    )
    (run_dir / ocr_step_path(1)).write_text(ocr.model_dump_json())
    # In the disc around (600, 500); inside the OCR line but 100 units from the point; 50 units from the recorded click.
    double.queue([click(610, 510), click(300, 210), click(850, 700)])
    args = ["--runs-dir", str(runs), *served_args(double)]
    proc = glassbox_in_process("decide", "--labelled", "--json", *args, env={KEY_ENV: key})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert (report["landed"], report["total"]) == (2, 3)
    assert report["runs"] == [{"run_id": run_id, "landed": 2, "decided": 3}]
    got = [
        (d["step"], d["verdict"], d["decided_point"], d["label_point"], d["element"]["source"], d["landed"])
        for d in report["decisions"]
    ]
    assert got == [
        (0, "wrong", [610.0, 510.0], [600.0, 500.0], "disc", True),
        (1, "wrong", [300.0, 210.0], [200.0, 200.0], "ocr_line", True),
        (2, "correct", [850.0, 700.0], [800.0, 700.0], "disc", False),
    ]
    assert report["decisions"][1]["element"]["box"] == [156.25, 175.0, 312.5, 225.0]
    assert report["decisions"][1]["element"]["text"] == "Tile two"
    assert report["decisions"][0]["element"]["radius"] == DISC_RADIUS
    assert [(s["step"], s["reason"]) for s in report["skipped"]] == [(3, "correct label with the step's action has no point")]
    assert [d.step for d in read_decisions(run_dir)] == [0, 1, 2]  # each decision recorded as a counterfactual

    double.queue([click(0, 0), click(0, 0), click(0, 0)])
    plain = glassbox_in_process("decide", "--labelled", *args, env={KEY_ENV: key})
    assert plain.returncode == 0, plain.stderr  # none landed is still a success
    assert "landed 0 of 3" in plain.stdout and "1 skipped" in plain.stdout


def test_the_element_is_the_correction_box_when_the_label_has_one(script_run):
    _, run_dir = script_run
    step = read_steps(run_dir)[0]
    correction = Correction(action="left_click", coordinate=(600.0, 500.0), box=(550.0, 480.0, 700.0, 520.0))
    label = Label.model_construct(id=1, run_id=run_dir.name, step=0, verdict="wrong", correction=correction)
    element = labelled_element(label, step, run_dir)
    assert element is not None and element.source == "correction_box" and element.box == (550.0, 480.0, 700.0, 520.0)
    assert element.holds((690, 519)) and not element.holds((701, 500))
    with pytest.raises(ValidationError):
        Correction(coordinate=(7, 15), box=(10, 10, 5, 20))  # inverted: not a box
    with pytest.raises(ValidationError):
        Correction(coordinate=(5, 5), box=(0, 0, 2000, 10))  # off the grid
    assert correction_box(Correction(coordinate=(1, 1))) is None  # no box: OCR line or disc


def test_hostile_and_wrong_input_exits_2_with_a_message(script_run, server, tmp_path):
    runs, run_dir = script_run
    double, key = server
    env = {KEY_ENV: key}
    args = ["--runs-dir", str(runs), *served_args(double)]

    def decide(*extra: str) -> tuple[int, str]:
        proc = glassbox_in_process("decide", *extra, env=env)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, " ".join(proc.stderr.split())

    assert decide(run_dir.name, "--step", "9", *args) == (2, f"error: run {run_dir.name} has no step 9 (its steps are 0..3)")
    assert decide(run_dir.name, *args)[1].startswith("error: give a run and a step")
    assert "drop --step" in decide(run_dir.name, "--step", "1", "--labelled", *args)[1]
    code, err = decide(run_dir.name, "--step", "1", "--runs-dir", str(runs))  # a script run: which model?
    assert code == 2 and "no model: pass --model DIR" in err
    code, err = decide(run_dir.name, "--step", "1", "--runs-dir", str(runs), "--policy", "openai", "--model", "m")
    assert code == 2 and "--policy openai needs --base-url" in err
    code, err = decide(run_dir.name, "--step", "1", "--runs-dir", str(runs), "--base-url", "file:///etc/passwd")
    assert code == 2 and "--base-url must be an http:// or https:// URL" in err

    # A screenshot gone from the folder.
    gone = runs / "gone"
    shutil.copytree(run_dir, gone)
    (gone / "run.json").write_text(json.dumps({**json.loads((gone / "run.json").read_text()), "run_id": "gone"}))
    (gone / read_steps(gone)[2].screenshot).unlink()
    code, err = decide("gone", "--step", "2", *args)
    assert code == 2 and "steps/0002/screenshot.png" in err and "gone" in err

    # A damaged line of steps.jsonl: that step cannot be decided, the others still can.
    damaged = runs / "damaged"
    shutil.copytree(run_dir, damaged)
    (damaged / "run.json").write_text(json.dumps({**json.loads((damaged / "run.json").read_text()), "run_id": "damaged"}))
    lines = (damaged / "steps.jsonl").read_bytes().split(b"\n")
    lines[1] = b'{"index": 1, "broken'
    (damaged / "steps.jsonl").write_bytes(b"\n".join(lines))
    code, err = decide("damaged", "--step", "1", *args)
    assert code == 2 and "step 1 of run damaged cannot be read: its line in steps.jsonl is not JSON" in err
    double.queue([click(1, 2)])
    assert decide("damaged", "--step", "2", *args)[0] == 0

    # decisions/ as a link out of the run folder: nothing is written through it.
    outside = tmp_path / "outside"
    outside.mkdir()
    linked = runs / "linked"
    shutil.copytree(run_dir, linked)
    (linked / "run.json").write_text(json.dumps({**json.loads((linked / "run.json").read_text()), "run_id": "linked"}))
    (linked / DECISIONS_DIR).symlink_to(outside, target_is_directory=True)
    double.queue([click(1, 2)])
    code, err = decide("linked", "--step", "0", *args)
    assert code == 2 and "is a link or not a folder" in err and not list(outside.iterdir())
    assert read_run(run_dir).status is RunStatus.succeeded


def test_the_key_a_server_echoes_back_never_reaches_the_record(script_run, server):
    runs, run_dir = script_run
    double, key = server
    wrong = "sk-wrong-" + secrets.token_hex(16)  # the double refuses it, naming it in the error text
    args = ["--runs-dir", str(runs), *served_args(double)]
    proc = glassbox_in_process("decide", run_dir.name, "--step", "0", *args, env={KEY_ENV: wrong})
    assert proc.returncode == 0, proc.stderr  # a failed backend is a decision with an error, not a crash
    [record] = read_decisions(run_dir)
    assert record.error and record.action is None and "401" in record.error
    assert not [p for p in run_dir.rglob("*") if p.is_file() and wrong.encode() in p.read_bytes()]
    assert wrong not in proc.stdout + proc.stderr


def test_damaged_decision_files_are_skipped_and_the_svg_escapes_what_they_hold(script_run):
    _, run_dir = script_run
    folder = run_dir / DECISIONS_DIR
    folder.mkdir()
    hostile = "<script>alert(1)</script>"
    good = {
        "id": "abcdef012345",
        "step": 2,
        "created_at": "2026-11-26T10:00:00Z",
        "policy": "openai",
        "model": hostile,
        "prompt_source": "recorded",
        "action": "left_click",
        "coordinate": [10, 20],
        "confidence": 0.42,
        "reasoning": hostile,
    }
    lines = [json.dumps(good), "not json", json.dumps({**good, "step": 1, "id": "123456789abc"}), json.dumps(good)[:40]]
    (folder / "step-0002.jsonl").write_text("\n".join(lines))  # the last line torn, one naming another step
    (folder / "notes.txt").write_text("ignored")
    [record] = read_decisions(run_dir)
    assert record.id == "abcdef012345"
    graph = attach_counterfactuals(run_graph(read_run(run_dir), read_steps(run_dir)), [record])
    svg = graph_svg(graph)
    assert hostile not in svg and "&lt;script&gt;" in svg
    assert 'data-decision="abcdef012345"' in svg and 'data-confidence="0.42"' in svg


def test_decide_with_the_tiny_local_model_records_attention_and_a_counterfactual(tiny_model_dir, tmp_path):
    """The tiny random-weight model (its outputs are noise): the mechanics only. A run it recorded is asked again
    with its recorded prompt, and the counterfactual carries attention maps and shows in the graph."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        'name: tiny-decide\ngoal: Open the first tile.\ntarget: {start_url: "http://fake.invalid/"}\n'
        "limits: {max_steps: 2, max_consecutive_errors: 5}\n",
        encoding="utf-8",
    )
    runs = tmp_path / "runs"
    result = run_task(
        load_task(path),
        policy="qwen3vl",
        runs_dir=runs,
        executor=FakeExecutor([screenshot("white"), screenshot("lightblue")]),
        policy_overrides={"model": str(tiny_model_dir), "max_new_tokens": 16, "decoding": "plain"},
    )
    run_dir = result.run_dir
    steps = read_steps(run_dir)
    assert len(steps) == 2 and steps[1].prompt is not None
    before = snapshot(run_dir)
    proc = glassbox_in_process("decide", run_dir.name, "--step", "1", "--runs-dir", str(runs), "--max-new-tokens", "16")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "asked qwen3vl" in proc.stdout and "prompt recorded" in proc.stdout and "attention maps:" in proc.stdout
    [record] = read_decisions(run_dir)
    assert record.policy == "qwen3vl" and record.model == str(tiny_model_dir) and record.prompt_source == "recorded"
    assert record.raw_output is not None and record.sampling["temperature"] == 0
    assert record.action is not None or record.error  # noise: a tool call or a recorded reason why there is none
    assert record.attention_file == f"decisions/step-0001-{record.id}.attention.npz"
    assert (run_dir / record.attention_file).is_file() and {a.key for a in record.attention} >= {"output/all"}
    assert snapshot(run_dir) == before
    graph = attach_counterfactuals(run_graph(read_run(run_dir), steps), read_decisions(run_dir))
    node = graph.nodes[f"cf:1:{record.id}"]
    assert node["attention"] is True and node["kind"] == "counterfactual"
    assert f'data-decision="{record.id}"' in graph_svg(graph)


def test_the_python_api_decides_without_recording_when_asked(script_run, server, monkeypatch):
    runs, run_dir = script_run
    double, key = server
    monkeypatch.setenv(KEY_ENV, key)
    options = DecideOptions(base_url=double.url, model=MODEL, api_key_env=KEY_ENV)
    policy = policy_for_run(run_dir, options)
    assert (policy.name, policy.model, policy.sampling.temperature) == ("openai", MODEL, 0)
    double.queue([click(800, 700)])
    try:
        decision = decide_step(run_dir, 2, policy, record=False)
    finally:
        policy.close()
    assert decision.recorded_in is None and not (run_dir / DECISIONS_DIR).exists()
    assert decision.point == (800.0, 700.0) and decision.original.coordinate == (800.0, 700.0)
    assert decision.original.pixel == (1024, 560) and decision.record.pixel == (1024, 560)


def test_a_served_run_is_asked_again_with_exactly_the_request_it_recorded(tmp_path, server, monkeypatch):
    """A run the served model decided: decide sends the very messages (system prompt, tools, history, screenshot)
    the run sent at that step, and tool schema and sampling come from the run's settings."""
    double, key = server
    path = tmp_path / "served.yaml"
    path.write_text(
        'name: served-decide\ngoal: Open the second tile.\ntarget: {start_url: "http://fake.invalid/"}\nlimits: {max_steps: 5}\n',
        encoding="utf-8",
    )
    monkeypatch.setenv(KEY_ENV, key)
    double.queue(
        [click(100, 100), click(300, 300), {"name": "computer_use", "arguments": {"action": "terminate", "status": "success"}}]
    )
    runs = tmp_path / "runs"
    result = run_task(
        load_task(path),
        policy="openai",
        runs_dir=runs,
        executor=FakeExecutor([screenshot("white"), screenshot("lightblue"), screenshot("khaki")]),
        policy_overrides={"base_url": double.url, "model": MODEL, "api_key_env": KEY_ENV, "temperature": 0},
    )
    assert result.status is RunStatus.succeeded, result.end_reason
    sent_at_step_1 = double.requests[1]["body"]
    double.queue([click(310, 290)])
    proc = glassbox_in_process("decide", result.run_dir.name, "--step", "1", "--runs-dir", str(runs), *served_args(double))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    asked = double.requests[-1]["body"]
    assert asked["messages"] == sent_at_step_1["messages"]
    assert {k: v for k, v in asked.items() if k != "messages"} == {k: v for k, v in sent_at_step_1.items() if k != "messages"}
    [record] = read_decisions(result.run_dir)
    assert record.prompt_source == "recorded" and record.coordinate == (310.0, 290.0)


def test_an_unreadable_screenshot_is_said_before_a_model_loads(script_run):
    runs, run_dir = script_run
    [step] = [s for s in read_steps(run_dir) if s.index == 1]
    (run_dir / step.screenshot).write_bytes(b"not a png")
    # No model at this path: loaded first, the error would be that it is missing.
    args = ("decide", run_dir.name, "--step", "1", "--runs-dir", str(runs), "--policy", "qwen3vl", "--model", "/nonexistent/m")
    proc = glassbox_in_process(*args)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot decide step 1 of run {run_dir.name}: {step.screenshot} is not an image" in said
    assert not (run_dir / DECISIONS_DIR).exists()
