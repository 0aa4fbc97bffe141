"""steps.jsonl as readers see it: a step's line appears only once its files exist; an unreadable line keeps its place."""

from __future__ import annotations

import threading

from tests.tracer.test_store import record, step
from tracer import RunWriter, read_steps
from tracer import evidence as evidence_module
from tracer.follow import RunFollower
from tracer.run_files import UnreadableStep, read_step_entries


def test_a_steps_line_is_appended_only_after_its_evidence_crop_is_on_disk(tmp_path, monkeypatch):
    started, release = threading.Event(), threading.Event()

    def slow_crop(png: bytes, box, point) -> bytes:  # the crop thread, held until the test lets it go
        started.set()
        assert release.wait(30)
        return b"crop"

    monkeypatch.setattr(evidence_module, "render_crop", slow_crop)
    writer = RunWriter.create(tmp_path, record())
    follower = RunFollower(writer.run_dir)
    writer.write_screenshot(0, b"\x89PNG fake", wait=False)
    evidence = writer.evidence.submit(0, b"\x89PNG fake", (10, 10), (5, 5), 1.0, None)
    recorded = step(0).model_copy(update={"evidence": evidence})
    writing = threading.Thread(target=writer.write_step, args=(recorded,))
    writing.start()
    assert started.wait(30)
    # While the crop is being made, the step's line must not be there: a viewer would announce a step whose crop 404s.
    writing.join(timeout=1.0)
    assert writing.is_alive()
    assert follower.poll_steps() == []
    release.set()
    writing.join(30)
    assert not writing.is_alive()
    [seen] = follower.poll_steps()
    assert seen.evidence is not None and (writer.run_dir / seen.evidence.crop).read_bytes() == b"crop"
    assert (writer.run_dir / seen.screenshot).is_file()
    writer.finish(status=writer.record.status, end_reason="done")


def test_an_unreadable_line_keeps_its_place_and_the_indices_after_it(tmp_path):
    writer = RunWriter.create(tmp_path, record())
    follower = RunFollower(writer.run_dir)
    writer.write_step(step(0))
    with open(writer.run_dir / "steps.jsonl", "ab") as fh:
        fh.write(b'{"index": 1, "not": "a step"}\n\xff\xfe not utf-8\n')
    writer.write_step(step(3))
    entries = read_step_entries(writer.run_dir)
    assert [e.index for e in entries] == [0, 1, 2, 3]
    assert [type(e).__name__ for e in entries] == ["StepRecord", "UnreadableStep", "UnreadableStep", "StepRecord"]
    bad = [e for e in entries if isinstance(e, UnreadableStep)]
    assert [b.line for b in bad] == [1, 2]
    assert bad[0].unreadable.startswith("not a valid step") and bad[1].unreadable in ("not JSON", "not UTF-8 text")
    assert [s.index for s in read_steps(writer.run_dir)] == [0, 3]  # the readers that want steps only
    followed = follower.poll_entries()
    assert [(type(e).__name__, e.index) for e in followed] == [(type(e).__name__, e.index) for e in entries]
    assert [s.index for s in RunFollower(writer.run_dir, from_step=2).poll_entries()] == [2, 3]
    writer.finish(status=writer.record.status, end_reason="done")


def test_a_line_too_long_to_be_a_step_is_passed_over_without_holding_it(tmp_path):
    import io

    from tracer.run_files import MAX_STEP_LINE, whole_lines

    assert list(whole_lines(io.BytesIO(b"a\n" + b"x" * 50 + b"\nb\n" + b"y" * 50), limit=10)) == [b"a\n", None, b"b\n"]
    assert list(whole_lines(io.BytesIO(b"x" * 50), limit=10)) == []  # too long and torn: nothing yet
    writer = RunWriter.create(tmp_path, record())
    follower = RunFollower(writer.run_dir)
    writer.write_step(step(0))
    with open(writer.run_dir / "steps.jsonl", "ab") as fh:
        fh.write(b'{"reasoning": "' + b"z" * MAX_STEP_LINE + b'"}\n')  # a crafted run folder
    writer.write_step(step(2))
    entries = read_step_entries(writer.run_dir)
    assert [(type(e).__name__, e.index) for e in entries] == [("StepRecord", 0), ("UnreadableStep", 1), ("StepRecord", 2)]
    assert isinstance(entries[1], UnreadableStep) and entries[1].unreadable.startswith("longer than")
    assert [s.index for s in read_steps(writer.run_dir)] == [0, 2]
    assert [(type(e).__name__, e.index) for e in follower.poll_entries()] == [(type(e).__name__, e.index) for e in entries]
    writer.finish(status=writer.record.status, end_reason="done")


def _damaged_run(tmp_path):
    writer = RunWriter.create(tmp_path, record())
    writer.write_step(step(0))
    with open(writer.run_dir / "steps.jsonl", "ab") as fh:
        fh.write(b'{"index": 1, "not": "a step"}\nnot json\n')
    writer.write_step(step(3))
    writer.finish(status=writer.record.status, end_reason="done")
    return writer.run_dir


def test_readers_that_need_every_step_refuse_a_damaged_line_and_name_it(tmp_path):
    import pytest

    from replays.playwright_export import ExportError, export_playwright
    from replays.replay import ReplayError, _source
    from tracer.run_files import DamagedSteps

    run_dir = _damaged_run(tmp_path)
    assert [s.index for s in read_steps(run_dir)] == [0, 3]  # the lenient readers (graph, viewer) go on
    with pytest.raises(DamagedSteps) as caught:
        read_steps(run_dir, whole=True)
    assert [d.line for d in caught.value.damaged] == [1, 2]
    message = str(caught.value)
    assert "line 2 of steps.jsonl (where step 1 would be)" in message and "and 1 more" in message
    # A replay or an exported script without steps 1 and 2 would run step 3's action out of order, silently.
    with pytest.raises(ReplayError, match="line 2 of steps.jsonl"):
        _source(tmp_path, run_dir.name)
    with pytest.raises(ExportError, match="line 2 of steps.jsonl"):
        export_playwright(run_dir, tmp_path / "script.py")


def test_runs_show_shows_damaged_lines_in_place(tmp_path):
    import json

    from tests.conftest import glassbox_in_process

    run_dir = _damaged_run(tmp_path)
    shown = glassbox_in_process("runs", "show", run_dir.name, "--runs-dir", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert "2 line(s) of steps.jsonl cannot be read" in shown.stdout
    lines = shown.stdout.splitlines()
    at = [i for i, line in enumerate(lines) if "unreadable line" in line]
    assert len(at) == 2 and "line 2 of steps.jsonl: not a valid step" in lines[at[0]] and "line 3" in lines[at[1]]
    as_json = json.loads(glassbox_in_process("runs", "show", run_dir.name, "--runs-dir", str(tmp_path), "--json").stdout)
    assert [s["index"] for s in as_json["steps"]] == [0, 3]
    assert [(u["index"], u["line"]) for u in as_json["unreadable"]] == [(1, 1), (2, 2)]
    replayed = glassbox_in_process("replay", run_dir.name, "--runs-dir", str(tmp_path))
    assert replayed.returncode == 2 and "line 2 of steps.jsonl" in replayed.stderr, replayed.stderr


def test_graph_share_and_otel_export_read_what_they_can_and_say_what_they_left_out(tmp_path):
    """The lenient readers go on past a damaged line, but none passes for the whole run: the graph has a node in
    its place, the shared page and the trace count it, and each command warns on standard error."""
    import json

    from tests.conftest import glassbox_in_process
    from tests.tracer.otlp_receiver import OtlpHttpReceiver

    run_dir = _damaged_run(tmp_path)
    graphed = glassbox_in_process("graph", run_dir.name, "--runs-dir", str(tmp_path), "--format", "json")
    assert graphed.returncode == 0, graphed.stderr
    assert "2 line(s) of steps.jsonl cannot be read" in graphed.stderr and "line 3 (step 2): not JSON" in graphed.stderr
    graph = json.loads(graphed.stdout)
    damaged = [n for n in graph["nodes"] if n["kind"] == "damaged"]
    assert [(n["id"], n["step"]) for n in damaged] == [("damaged:1", 1), ("damaged:2", 2)]
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert {("out:0", "damaged:1"), ("damaged:1", "damaged:2"), ("damaged:2", "obs:3")} <= edges  # in their place
    mermaid = glassbox_in_process("graph", run_dir.name, "--runs-dir", str(tmp_path), "--format", "mermaid").stdout
    assert "line 2 of steps.jsonl cannot be read" in mermaid

    page = tmp_path / "shared.html"
    shared = glassbox_in_process("export", "html", run_dir.name, "--runs-dir", str(tmp_path), "--out", str(page))
    assert shared.returncode == 0, shared.stderr
    assert "2 line(s) of steps.jsonl cannot be read" in shared.stderr
    assert "2 recorded lines of steps.jsonl cannot be read and are left out (lines 2, 3)" in page.read_text(encoding="utf-8")

    with OtlpHttpReceiver() as receiver:
        sent = glassbox_in_process("export", "otel", run_dir.name, "--runs-dir", str(tmp_path), env=receiver.env)
        spans = receiver.spans()
    assert sent.returncode == 0, sent.stderr
    assert "2 line(s) of steps.jsonl cannot be read" in sent.stderr
    [root] = [s for s in spans if not s.parent_id]
    assert root.attributes["glassbox.run.unreadable_step_lines"] == 2
    assert len([s for s in spans if s.name == "glassbox.step"]) == 2  # steps 0 and 3


def test_json_output_carries_no_raw_terminal_control_yet_the_same_text(tmp_path):
    """JSON encoders escape C0 controls only: a C1 CSI (U+009B) in a model's reasoning went to the terminal raw."""
    import json

    from tests.conftest import glassbox_in_process

    writer = RunWriter.create(tmp_path, record())
    hostile = "click \x9b2J\x1b[31m here\x7f"
    writer.write_step(step(0).model_copy(update={"reasoning": hostile}))
    writer.finish(status=writer.record.status, end_reason="done")
    shown = glassbox_in_process("runs", "show", writer.run_dir.name, "--runs-dir", str(tmp_path), "--json")
    assert shown.returncode == 0, shown.stderr
    assert not any(0x7F <= ord(c) < 0xA0 or (ord(c) < 32 and c != "\n") for c in shown.stdout)
    assert json.loads(shown.stdout)["steps"][0]["reasoning"] == hostile


def test_runs_show_sends_no_escape_sequence_from_a_record_to_the_terminal(tmp_path):
    """rich escapes markup, not control characters: a reasoning or an error (a page's text) holding ESC sequences
    reached the terminal (a cleared screen, a new window title)."""
    from tests.conftest import glassbox_in_process

    writer = RunWriter.create(tmp_path, record())
    hostile = {"reasoning": "click\x1b[2J here", "error": "\x1b]0;owned\x07", "outcome": "error"}
    writer.write_step(step(0).model_copy(update=hostile))
    writer.finish(status=writer.record.status, end_reason="done")
    shown = glassbox_in_process("runs", "show", writer.run_dir.name, "--runs-dir", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "click [2J here" in shown.stdout and "]0;owned" in shown.stdout  # the rest shown as text


def test_the_live_log_line_sends_no_escape_sequence_to_the_terminal(capsys):
    """A log event's fields hold page text (a URL, an error); one without a space was printed as it was."""
    from cli.app import _show_log_event

    _show_log_event({"event": "navigated", "level": "info", "url": "http://127.0.0.1/\x1b]0;owned\x07\x9b2J", "n": 1})
    err = capsys.readouterr().err
    assert "navigated" in err and "owned" in err
    assert not any(ord(c) < 32 and c != "\n" or 0x7F <= ord(c) < 0xA0 for c in err)
