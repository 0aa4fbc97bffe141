"""Scripted labels (``label_step``, the one store the viewer uses too) and the feedback exports, field by field
against the layouts LLaMA-Factory and ms-swift document (see :mod:`replays.export_flavors` for the sources):
on runs recorded on the fake executor, no Chromium."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from agent import load_task, run_task
from replays.export import FeedbackExportError, export_feedback, rebuilt_prompt
from replays.export_flavors import DATASET_INFO
from replays.labels import Correction, LabelError, LabelIn, Labels, label_step
from tests.replays.label_runs import MODEL_OUTPUTS, SCRIPT, SECRET, SECRET_ENV, model_run, script_run, task_file
from tools.fake import FakeExecutor
from tracer.labels import LABELS_FILE
from tracer.schema import RunStatus
from tracer.secrets import MASK
from tracer.store import read_run, read_steps

TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system"}


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return script_run(tmp_path)


@pytest.fixture
def model_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return model_run(tmp_path)[0]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- labels -------------------------------------------------------------------------------------------------------


def test_label_step_stores_one_label_the_viewer_lists_with_its_box(run_dir: Path) -> None:
    wrong = label_step(run_dir, 0, "wrong", at=(412, 300), box=(380, 280, 450, 320), note="Publish, not Save")
    right = label_step(run_dir, 2, "correct")
    undone = label_step(run_dir, 1, "wrong", box=(100, 100, 200, 150))  # a box alone: its centre is the point
    assert undone.correction is not None and undone.correction.coordinate == (150, 125)
    labels = Labels(run_dir.parent)
    assert labels.undo(undone.id)
    listed = labels.list(run_dir.name)
    assert [(lbl.id, lbl.step, lbl.verdict) for lbl in listed] == [(wrong.id, 0, "wrong"), (right.id, 2, "correct")]
    fix = listed[0].correction
    assert fix is not None and fix.action == "left_click" and fix.coordinate == (412, 300)
    assert fix.box == (380, 280, 450, 320) and listed[0].note == "Publish, not Save"
    assert listed[0].pixel == (527, 240)  # 1280x800 screenshot
    events = lines(run_dir / LABELS_FILE)
    assert [e["op"] for e in events] == ["add", "add", "add", "undo"]
    assert events[0]["correction"]["box"] == [380, 280, 450, 320]


def test_labels_written_before_boxes_existed_still_read(run_dir: Path) -> None:
    old = {
        "op": "add",
        "id": 5,
        "step": 0,
        "verdict": "wrong",
        "correction": {"action": "left_click", "coordinate": [10, 20], "text": None, "keys": None, "pixel": [13, 16]},
        "note": "old \x1b[31m note",
        "created_at": "2026-11-01T00:00:00+00:00",
    }
    (run_dir / LABELS_FILE).write_text(json.dumps(old) + "\n")
    (listed,) = Labels(run_dir.parent).list()
    assert listed.id == 5 and listed.correction is not None and listed.correction.box is None and listed.pixel == (13, 16)
    assert listed.note == "old  [31m note"  # stored before control characters were refused: listed, made printable


@pytest.mark.parametrize(
    ("step", "verdict", "kwargs", "message"),
    [
        (7, "wrong", {}, "has no step 7"),
        (-1, "correct", {}, "has no step -1"),
        (0, "correct", {"at": (5, 5)}, "takes no correction (got at)"),
        (0, "correct", {"note": "fine", "text": "x"}, "takes no correction (got text)"),
        (0, "wrong", {"at": (1001, 5)}, "0..1000 grid"),
        (0, "wrong", {"at": (float("nan"), 5)}, "0..1000 grid"),
        (0, "wrong", {"at": (1, 2, 3)}, "takes 2 numbers"),
        (0, "wrong", {"box": (50, 50, 40, 60)}, "x1 < x2 and y1 < y2"),
        (0, "wrong", {"box": (50, 50, 50, 60)}, "x1 < x2 and y1 < y2"),
        (0, "wrong", {"at": (10, 10), "box": (50, 50, 60, 60)}, "outside the box"),
        (0, "wrong", {"box": (0, 0, 10, 1e9)}, "0..1000 grid"),
        (0, "wrong", {"action": "fly", "at": (1, 1)}, "unknown action 'fly'"),
        (0, "wrong", {"action": "type"}, "type needs text"),
        (0, "wrong", {"note": "red \x1b[31m alert"}, "control character"),
        (0, "wrong", {"note": "x" * 2001}, "at most 2000 characters"),
        (0, "wrong", {"text": "a\x00b"}, "control character"),
        (0, "wrong", {"keys": ["ctrl", ""]}, "not a key name"),
        (0, "maybe", {}, "'correct' or 'wrong'"),
    ],
)
def test_a_label_that_cannot_be_stored_is_refused_saying_why(run_dir: Path, step, verdict, kwargs, message) -> None:
    with pytest.raises(LabelError) as caught:
        label_step(run_dir, step, verdict, **kwargs)
    assert message in str(caught.value)
    assert not (run_dir / LABELS_FILE).exists()  # nothing half-stored


def test_a_note_keeps_tabs_and_newlines_and_a_run_that_is_not_one_is_refused(run_dir: Path, tmp_path: Path) -> None:
    assert label_step(run_dir, 0, "wrong", note="line one\n\tline two").note == "line one\n\tline two"
    with pytest.raises(LabelError, match="no run at"):
        label_step(tmp_path / "nowhere", 0, "correct")


def test_a_damaged_labels_file_keeps_its_whole_lines_and_takes_new_ones(run_dir: Path) -> None:
    first = label_step(run_dir, 0, "correct")
    with open(run_dir / LABELS_FILE, "ab") as fh:
        fh.write(b'\xff\xfe not json\n[1, 2]\n{"op": "add", "id": -4}\n' + b"x" * 100_000 + b'\n{"op": "add", "id"')
    second = label_step(run_dir, 1, "wrong", at=(5, 5))
    assert [lbl.id for lbl in Labels(run_dir.parent).list()] == [first.id, second.id]


def test_a_labels_file_that_cannot_be_written_is_a_usage_error(run_dir: Path) -> None:
    (run_dir / LABELS_FILE).mkdir()
    with pytest.raises(LabelError, match="cannot write the labels of run"):
        label_step(run_dir, 0, "correct")


def test_a_labels_file_that_is_a_link_is_never_written_through(run_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (run_dir / LABELS_FILE).symlink_to(victim)
    with pytest.raises(LabelError, match="cannot write the labels of run"):
        label_step(run_dir, 0, "correct")
    assert victim.read_text() == "keep me\n"


def test_a_hand_edited_label_past_any_step_is_passed_over(run_dir: Path) -> None:
    label_step(run_dir, 0, "correct")
    with (run_dir / LABELS_FILE).open("a", encoding="utf-8") as fh:
        good = lines(run_dir / LABELS_FILE)[0]
        fh.write(json.dumps(good | {"id": good["id"] + 1, "step": 2**63}) + "\n")  # SQLite cannot hold it
        fh.write(json.dumps({"op": "undo", "id": 2**70, "at": good["created_at"]}) + "\n")
    assert [(lbl.step, lbl.verdict) for lbl in Labels(run_dir.parent).list()] == [(0, "correct")]
    assert label_step(run_dir, 1, "correct").step == 1  # the runs dir still works


def test_a_secret_typed_into_a_label_becomes_its_placeholder(run_dir: Path) -> None:
    label = label_step(run_dir, 1, "wrong", text=f"pw {SECRET}", note=f"it was {SECRET}")
    assert label.correction is not None and label.correction.text == "pw <secret>password</secret>"
    assert label.note == "it was <secret>password</secret>"
    assert SECRET not in (run_dir / LABELS_FILE).read_text()
    shouted = label_step(run_dir, 1, "wrong", at=(10, 10), note=f"typed {SECRET.upper()} with caps lock on")
    assert shouted.note == "typed <secret>password</secret> with caps lock on"  # another case gives it away too
    assert SECRET.upper() not in (run_dir / LABELS_FILE).read_text()


# -- exports: the prompt ----------------------------------------------------------------------------------------


def test_the_rebuilt_prompt_is_the_one_the_model_policy_sent(model_run_dir: Path) -> None:
    """Steps recorded by the Qwen3-VL policy carry the prompt it built (system prompt with the tool schema, the
    history turns of history_screenshots 2); building it again from the records gives the same messages."""
    run = read_run(model_run_dir)
    steps = {s.index: s for s in read_steps(model_run_dir)}
    assert len(steps) == 3
    for step in steps.values():
        assert step.prompt is not None
        assert rebuilt_prompt(run, steps, step) == step.prompt
    assert [m.role for m in steps[1].prompt or []] == ["system", "user", "assistant", "user"]
    assert '"name": "computer_use"' in (steps[0].prompt or [])[0].text


# -- exports: the layouts, field by field -----------------------------------------------------------------------


def labelled(run_dir: Path) -> None:
    label_step(run_dir, 0, "wrong", at=(412, 300), box=(380, 280, 450, 320), note="not there")
    label_step(run_dir, 1, "wrong", at=(250, 400))
    label_step(run_dir, 2, "correct")


def test_llamafactory_sft_follows_its_sharegpt_layout_and_dataset_info(model_run_dir: Path, tmp_path: Path) -> None:
    """LLaMA-Factory data/README.md (sharegpt, multimodal) and data/converter.py SharegptDatasetConverter."""
    labelled(model_run_dir)
    out = tmp_path / "lf" / "gb_sft.jsonl"
    summary = export_feedback(model_run_dir.parent, out, "sft", flavor="llamafactory")
    assert summary.records == 3 and summary.thinking and summary.dataset_name == "gb_sft"
    info = json.loads((out.parent / DATASET_INFO).read_text())
    assert info == {
        "gb_sft": {
            "file_name": "gb_sft.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": TAGS,
        }
    }
    steps = {s.index: s for s in read_steps(model_run_dir)}
    records = lines(out)
    for record, step in zip(records, steps.values(), strict=True):
        assert set(record) == {"messages", "images", "meta"}
        roles = [m["role"] for m in record["messages"]]
        assert roles[0] == "system" and roles[1:] == ["user", "assistant"] * (len(roles) // 2)
        assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in record["messages"])
        assert [m["content"] for m in record["messages"][:-1]] == [m.text for m in step.prompt or []]
        text = "".join(m["content"] for m in record["messages"])
        assert text.count("<image>") == len(record["images"]) == sum(len(m.images) for m in step.prompt or [])
        for image in record["images"]:
            assert not Path(image).is_absolute() and (out.parent / image).is_file()  # relative to dataset_dir
    # Correct: the model's own reasoning, then its call. Corrected: a sentence naming the action and target.
    assert records[2]["messages"][-1]["content"] == "<think>\nDone.\n</think>\n\n" + MODEL_OUTPUTS[2].split("\n\n", 1)[1]
    corrected = records[0]["messages"][-1]["content"]
    assert corrected.startswith(
        "<think>\nThe next action is left_click at (412, 300), inside the element from (380, 280) to (450, 320).\n</think>\n\n"
    )
    assert json.loads(corrected.split("<tool_call>\n")[1].split("\n</tool_call>")[0]) == {
        "name": "computer_use",
        "arguments": {"action": "left_click", "coordinate": [412, 300]},
    }
    assert records[0]["meta"]["box"] == [380, 280, 450, 320] and records[0]["meta"]["verdict"] == "wrong"


def test_llamafactory_dpo_is_a_ranking_entry_with_chosen_and_rejected(model_run_dir: Path, tmp_path: Path) -> None:
    """LLaMA-Factory data/README.md "Preference Dataset" (sharegpt): ranking true, chosen/rejected messages."""
    labelled(model_run_dir)
    out = tmp_path / "lf" / "dpo.jsonl"
    export_feedback(model_run_dir.parent, out, "sft")  # a second dataset in the same dataset_info.json stays
    summary = export_feedback(model_run_dir.parent, out.with_name("gb_dpo.jsonl"), "dpo")
    assert summary.records == 2 and summary.skipped == {"correct labels make no DPO pair": 1}
    info = json.loads((out.parent / DATASET_INFO).read_text())
    assert set(info) == {"dpo", "gb_dpo"}
    assert info["gb_dpo"] == {
        "file_name": "gb_dpo.jsonl",
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "messages", "images": "images", "chosen": "chosen", "rejected": "rejected"},
        "tags": TAGS,
    }
    first = lines(out.with_name("gb_dpo.jsonl"))[0]
    assert set(first) == {"messages", "chosen", "rejected", "images", "meta"}
    assert first["messages"][-1]["role"] == "user"  # the prompt ends with the user's turn
    assert first["chosen"]["role"] == first["rejected"]["role"] == "assistant"
    assert (
        first["rejected"]["content"]
        == "<think>\nThe Sign in button is in the middle.\n</think>\n\n" + MODEL_OUTPUTS[0].split("\n\n", 1)[1]
    )
    assert '"coordinate": [412, 300]' in first["chosen"]["content"]
    assert "stage: dpo" in summary.usage and "dataset: gb_dpo" in summary.usage


def test_swift_records_use_absolute_images_and_rejected_response(model_run_dir: Path, tmp_path: Path) -> None:
    """ms-swift docs/source_en/Customization/Custom-dataset.md: messages + images; DPO with the chosen answer
    as the last assistant message and rejected_response (chosen/rejected are not keys it reads)."""
    labelled(model_run_dir)
    sft = tmp_path / "swift" / "sft.jsonl"
    summary = export_feedback(model_run_dir.parent, sft, "sft", flavor="swift")
    assert summary.dataset_info is None and not (sft.parent / DATASET_INFO).exists()
    for record in lines(sft):
        assert set(record) == {"messages", "images", "meta"} and record["messages"][-1]["role"] == "assistant"
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in record["images"])
    dpo = tmp_path / "swift" / "dpo.jsonl"
    export_feedback(model_run_dir.parent, dpo, "dpo", flavor="swift")
    pairs = lines(dpo)
    assert len(pairs) == 2
    for pair in pairs:
        assert set(pair) == {"messages", "rejected_response", "images", "meta"}
        assert pair["messages"][-1]["role"] == "assistant" and pair["messages"][-2]["role"] == "user"
        assert isinstance(pair["rejected_response"], str) and pair["rejected_response"] != pair["messages"][-1]["content"]
        assert all(Path(p).is_absolute() for p in pair["images"])


def test_thinking_follows_the_runs_or_the_caller(run_dir: Path, model_run_dir: Path, tmp_path: Path) -> None:
    label_step(run_dir, 2, "correct")  # a script run: its "reasoning" is the script's own line
    summary = export_feedback(run_dir.parent, tmp_path / "a" / "sft.jsonl")
    assert not summary.thinking
    (record,) = lines(tmp_path / "a" / "sft.jsonl")
    assert record["messages"][-1]["content"].startswith("<tool_call>")
    label_step(model_run_dir, 2, "correct")
    summary = export_feedback(model_run_dir.parent, tmp_path / "b" / "sft.jsonl", thinking=False)
    assert not summary.thinking and "<think>" not in (tmp_path / "b" / "sft.jsonl").read_text()


def test_no_secret_reaches_an_export_even_from_a_hand_edited_run(model_run_dir: Path, tmp_path: Path) -> None:
    """The recorder masks secrets; a run folder edited by hand (or written by an older version) may not be:
    the export scrubs every string it writes with the secrets the run's task can resolve here."""
    steps_file = model_run_dir / "steps.jsonl"
    rows = lines(steps_file)
    rows[2]["reasoning"] = f"the password is {SECRET}"
    rows[0]["prompt"][1]["text"] += f" (password {SECRET})"
    steps_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    label_step(model_run_dir, 0, "wrong", at=(10, 10), note="x")
    label_step(model_run_dir, 2, "correct")
    for flavor in ("llamafactory", "swift"):
        for fmt in ("sft", "dpo"):
            out = tmp_path / flavor / f"{fmt}.jsonl"
            export_feedback(model_run_dir.parent, out, fmt, flavor=flavor)  # type: ignore[arg-type]
            text = out.read_text()
            assert SECRET not in text and SECRET[:8] not in text
            assert MASK in text


def test_an_export_with_a_damaged_dataset_info_writes_nothing(model_run_dir: Path, tmp_path: Path) -> None:
    label_step(model_run_dir, 2, "correct")
    out = tmp_path / "lf" / "sft.jsonl"
    out.parent.mkdir()
    (out.parent / DATASET_INFO).write_text("[not, a dict")
    with pytest.raises(FeedbackExportError, match="dataset_info.json is not readable JSON"):
        export_feedback(model_run_dir.parent, out)
    assert not out.exists() and (out.parent / DATASET_INFO).read_text() == "[not, a dict"
    assert not (out.parent / "images").exists()  # checked before a screenshot is copied


def test_steps_that_make_no_usable_record_are_skipped_and_counted(model_run_dir: Path, tmp_path: Path) -> None:
    steps_file = model_run_dir / "steps.jsonl"
    rows = lines(steps_file)
    rows[1]["prompt"][-1]["text"] += " a page titled <image>"  # one tag more than images: the tools would misplace them
    rows[2]["tool_calls"] = []  # an output with no tool call, as a parse error leaves it
    steps_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    label_step(model_run_dir, 0, "wrong", at=(500, 500))  # what the model did: no preference
    label_step(model_run_dir, 1, "wrong", at=(10, 10))
    label_step(model_run_dir, 2, "correct")
    summary = export_feedback(model_run_dir.parent, tmp_path / "dpo.jsonl", "dpo", thinking=True)
    assert summary.records == 0
    assert summary.skipped == {
        "correct labels make no DPO pair": 1,
        "correction repeats the model's action": 1,
        "prompt text holds an <image> tag of its own": 1,
    }
    summary = export_feedback(model_run_dir.parent, tmp_path / "sft.jsonl", "sft")
    assert summary.records == 1
    assert summary.skipped == {
        "correct label on a step whose output had no tool call": 1,
        "prompt text holds an <image> tag of its own": 1,
    }


def test_a_script_step_after_a_damaged_line_is_skipped_not_exported_with_a_history_short_of_a_step(
    run_dir: Path, tmp_path: Path
) -> None:
    """A script's step records no prompt: the export rebuilds it from the steps before. With one of those
    unreadable, the sample would silently lack that step in its history (not what a model is sent)."""
    label_step(run_dir, 0, "wrong", at=(10, 10))
    label_step(run_dir, 2, "wrong", at=(20, 20))
    steps_file = run_dir / "steps.jsonl"
    rows = steps_file.read_text(encoding="utf-8").splitlines()
    rows[1] = rows[1][: len(rows[1]) // 2]  # step 1's line damaged in place (a crash, a hand edit)
    steps_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    summary = export_feedback(run_dir.parent, tmp_path / "sft.jsonl", "sft")
    assert summary.records == 1  # step 0: nothing before it
    assert summary.skipped == {"a step before it is damaged": 1}


# -- a secret written in the task file itself (the bundled task's password is one) -------------------------------
LITERAL = "Lit-tulip-4821-value"


@pytest.fixture
def literal_run(tmp_path: Path) -> Path:
    """A script run whose task gives its password as a literal secret value, not an environment variable."""
    path = task_file(tmp_path, SCRIPT)
    path.write_text(
        path.read_text(encoding="utf-8").replace(f"{{env: {SECRET_ENV}}}", f"{{value: {LITERAL}, secret: true}}"),
        encoding="utf-8",
    )
    task = load_task(path)
    assert task.secret_values() == {"password": LITERAL}
    result = run_task(task, policy="script", runs_dir=tmp_path / "runs", executor=FakeExecutor(secrets=task.secret_values()))
    assert result.status is RunStatus.succeeded, result.end_reason
    return result.run_dir


def test_a_literal_secret_never_reaches_a_label_or_an_export(literal_run: Path, tmp_path: Path) -> None:
    label_step(literal_run, 1, "wrong", text=LITERAL, note=f"the password is {LITERAL}")
    # The viewer's path: a LabelIn straight into the store, as POST /api/runs/RUN/steps/N/labels gives it.
    viewer = LabelIn(verdict="wrong", correction=Correction(action="type", text=f"x{LITERAL}"), note=LITERAL)
    added = Labels(literal_run.parent).add(literal_run.name, 0, viewer)
    assert added.note == "<secret>password</secret>" and added.correction is not None
    assert added.correction.text == "x<secret>password</secret>"
    with pytest.raises(LabelError, match="keys: a key holds the value of one of the run's secrets"):
        label_step(literal_run, 0, "wrong", keys=["ctrl", LITERAL])
    assert LITERAL not in (literal_run / LABELS_FILE).read_text(encoding="utf-8")
    for flavor in ("llamafactory", "swift"):
        for fmt in ("sft", "dpo"):
            out = tmp_path / "out" / flavor / f"{fmt}.jsonl"
            export_feedback(literal_run.parent, out, fmt, flavor=flavor)  # type: ignore[arg-type]
            assert LITERAL not in out.read_text(encoding="utf-8")
    # A label written before this (or by hand) with the value in it is shown and exported with it by name.
    with (literal_run / LABELS_FILE).open("a", encoding="utf-8") as fh:
        written = lines(literal_run / LABELS_FILE)
        old = written[1] | {"id": written[1]["id"] + 1, "note": f"old {LITERAL}"}  # on step 0, the latest there
        fh.write(json.dumps(old) + "\n")
    out = tmp_path / "out" / "again.jsonl"
    export_feedback(literal_run.parent, out, "sft", flavor="swift")
    text = out.read_text(encoding="utf-8")
    assert LITERAL not in text and "old <secret>password</secret>" in text
    listed = {lbl.id: lbl for lbl in Labels(literal_run.parent).list()}
    assert listed[old["id"]].note == "old <secret>password</secret>"  # glassbox labels, the viewer's API


@pytest.mark.parametrize(
    ("correction", "message"),
    [
        ({"action": "answer"}, "answer needs text"),
        ({"action": "goto_url"}, "goto_url needs text (the URL)"),
        ({"action": "scroll", "at": (5, 5)}, "scroll cannot be given as a correction"),
        ({"action": "terminate", "text": "maybe"}, "terminate takes text success or failure"),
        # the step clicked, it uploaded no file: an upload correction there would name none
        ({"action": "upload_file", "at": (5, 5)}, "is not an action the model could take"),
        ({"action": "goto_url", "text": "javascript:alert(1)"}, "is not an action the model could take"),
    ],
)
def test_a_correction_that_would_export_as_no_valid_action_is_refused(run_dir: Path, correction, message) -> None:
    with pytest.raises(LabelError, match=re.escape(message)):
        label_step(run_dir, 0, "wrong", **correction)
    assert not (run_dir / LABELS_FILE).exists()


def test_corrections_export_as_the_tool_calls_the_parser_reads(run_dir: Path, tmp_path: Path) -> None:
    label_step(run_dir, 0, "wrong", action="goto_url", text="http://fake.invalid/admin")
    label_step(run_dir, 1, "wrong", action="answer", text="42")
    label_step(run_dir, 2, "wrong", action="terminate", text="failure")
    out = tmp_path / "sft.jsonl"
    export_feedback(run_dir.parent, out, "sft", flavor="swift")
    calls = [json.loads(r["messages"][-1]["content"].split("<tool_call>\n")[1].split("\n</tool_call>")[0]) for r in lines(out)]
    assert calls == [
        {"name": "goto_url", "arguments": {"url": "http://fake.invalid/admin"}},
        {"name": "computer_use", "arguments": {"action": "answer", "text": "42"}},
        {"name": "computer_use", "arguments": {"action": "terminate", "status": "failure"}},
    ]


def test_a_script_step_in_a_thinking_export_says_its_action_not_the_scripts_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    (tmp_path / "m").mkdir()
    (tmp_path / "s").mkdir()
    model_dir = model_run(tmp_path / "m")[0]
    script_dir = script_run(tmp_path / "s")
    runs = tmp_path / "runs"
    runs.mkdir()
    for run in (model_dir, script_dir):  # one runs dir holding both
        shutil.copytree(run, runs / run.name)
    label_step(runs / model_dir.name, 2, "correct")
    label_step(runs / script_dir.name, 0, "correct")
    out = tmp_path / "sft.jsonl"
    summary = export_feedback(runs, out, "sft", flavor="swift")
    assert summary.thinking  # a model's reasoning is among them
    targets = {r["meta"]["run_id"]: r["messages"][-1]["content"] for r in lines(out)}
    assert targets[model_dir.name].startswith("<think>\nDone.\n</think>")
    scripted = targets[script_dir.name]
    assert scripted.startswith("<think>\nThe next action is left_click at (500, 500).\n</think>"), scripted
    assert "Script step" not in scripted


def test_a_literal_secret_is_known_even_when_another_input_of_its_task_is_not(
    literal_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GLASSBOX_TEST_UNSET_INPUT", raising=False)
    task_path = Path(read_run(literal_run).task_file or "")
    text = task_path.read_text(encoding="utf-8")
    task_path.write_text(text.replace("inputs:\n", "inputs:\n  region: {env: GLASSBOX_TEST_UNSET_INPUT}\n"), encoding="utf-8")
    label = label_step(literal_run, 0, "wrong", note=f"typed {LITERAL}")
    assert label.note == "typed <secret>password</secret>"


def test_an_export_with_no_record_leaves_an_earlier_export_as_it_was(
    model_run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exporting from the wrong runs dir, or before labelling, must not empty the dataset made last time."""
    from tests.conftest import glassbox_in_process

    label_step(model_run_dir, 1, "wrong", at=(10, 10))
    out = tmp_path / "data" / "sft.jsonl"
    assert export_feedback(model_run_dir.parent, out, "sft").records == 1
    before, info_before = out.read_bytes(), (out.parent / DATASET_INFO).read_bytes()
    empty = tmp_path / "no-labels"
    empty.mkdir()
    summary = export_feedback(empty, out, "sft")
    assert (summary.records, summary.written) == (0, False)
    assert out.read_bytes() == before and (out.parent / DATASET_INFO).read_bytes() == info_before
    assert not list(out.parent.glob("*.tmp"))

    monkeypatch.chdir(tmp_path)
    result = glassbox_in_process("export", "feedback", "--format", "sft", "--out", str(out), "--runs-dir", str(empty))
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1, said
    assert "nothing to export" in said and "was not written" in said and "wrote" not in said
    assert out.read_bytes() == before
