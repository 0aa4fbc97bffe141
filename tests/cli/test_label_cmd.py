"""``glassbox label`` / ``glassbox labels`` and ``glassbox export feedback --flavor``: what they print, store and
refuse (exit 2, naming what is wrong), on a script run recorded on the fake executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replays.labels import Labels
from tests.conftest import glassbox_in_process
from tests.replays.label_runs import SECRET, SECRET_ENV, script_run
from tracer.labels import LABELS_FILE


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return script_run(tmp_path)


def test_label_by_prefix_and_by_folder_then_list_them(run_dir: Path) -> None:
    runs = str(run_dir.parent)
    done = glassbox_in_process(
        "label", run_dir.name[:18], "--step", "0", "wrong", "--at", "412,300", "--box", "380,280,450,320",
        "--note", "the Publish button", "--runs-dir", runs,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"labelled step 0 of {run_dir.name} wrong: left_click at 412,300 box 380,280,450,320" in done.stdout
    done = glassbox_in_process("label", str(run_dir), "-s", "1", "wrong", "--text", f"the {SECRET}", "--json")
    assert done.returncode == 0, done.stderr
    typed = json.loads(done.stdout)
    assert typed["correction"]["action"] == "type" and typed["correction"]["text"] == "the <secret>password</secret>"
    assert glassbox_in_process("label", str(run_dir), "--step", "2", "correct").returncode == 0
    done = glassbox_in_process("label", str(run_dir), "--step", "1", "wrong", "--keys", "ctrl+a", "--json")
    keys = json.loads(done.stdout)
    assert keys["correction"]["action"] == "key" and keys["correction"]["keys"] == ["ctrl", "a"]
    Labels(run_dir.parent).undo(keys["id"])

    listed = json.loads(glassbox_in_process("labels", run_dir.name, "--runs-dir", runs, "--json").stdout)
    assert [(lbl["step"], lbl["verdict"]) for lbl in listed["labels"]] == [(0, "wrong"), (1, "wrong"), (2, "correct")]
    assert listed["labels"][0]["correction"]["box"] == [380, 280, 450, 320] and listed["labels"][0]["pixel"] == [527, 240]
    everywhere = json.loads(glassbox_in_process("labels", "--runs-dir", runs, "--json").stdout)
    assert everywhere["labels"] == listed["labels"]
    table = glassbox_in_process("labels", str(run_dir))
    assert table.returncode == 0
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["id", "run", "step", "verdict", "correction", "note"]
    assert len(rows) == 4 and "the Publish button" in rows[1] and "box 380,280,450,320" in rows[1]
    assert SECRET not in table.stdout + json.dumps(everywhere) + (run_dir / LABELS_FILE).read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--step", "9", "correct"], "has no step 9"),
        (["--step", "0", "correct", "--at", "5,5"], "takes no correction (got at)"),
        (["--step", "0", "wrong", "--at", "5"], "--at takes X,Y on the 0..1000 grid"),
        (["--step", "0", "wrong", "--at", "5,x"], "--at takes X,Y"),
        (["--step", "0", "wrong", "--at", "2000,5"], "must lie on the 0..1000 grid"),
        (["--step", "0", "wrong", "--box", "1,2,3"], "--box takes X1,Y1,X2,Y2"),
        (["--step", "0", "wrong", "--box", "9,9,1,1"], "x1 < x2 and y1 < y2"),
        (["--step", "0", "wrong", "--at", "500,500", "--box", "1,1,9,9"], "outside the box"),
        (["--step", "0", "wrong", "--note", "bell\x07"], "control character"),
        (["--step", "0", "wrong", "--note", "fine \u202eenif"], "control character"),  # reorders what follows
        (["--step", "0", "wrong", "--action", "dance", "--at", "1,1"], "unknown action 'dance'"),
    ],
)
def test_a_bad_label_exits_2_saying_what_is_wrong(run_dir: Path, args: list[str], message: str) -> None:
    done = glassbox_in_process("label", str(run_dir), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert not (run_dir / LABELS_FILE).exists()


def test_an_unknown_run_exits_2(run_dir: Path) -> None:
    for command in (["label", "nope", "--step", "0", "correct"], ["labels", "nope"]):
        done = glassbox_in_process(*command, "--runs-dir", str(run_dir.parent))
        assert done.returncode == 2 and "no run 'nope'" in done.stderr


def test_labels_of_a_run_with_a_damaged_labels_file(run_dir: Path) -> None:
    (run_dir / LABELS_FILE).write_bytes(
        b'\x00\xff{"op": "add"\n{"op":"add","id":3,"step":0,"verdict":"correct","created_at":"2026-11-01T00:00:00Z"}\n'
    )
    done = glassbox_in_process("labels", str(run_dir), "--json")
    assert done.returncode == 0, done.stderr
    assert [lbl["id"] for lbl in json.loads(done.stdout)["labels"]] == [3]


def test_export_feedback_prints_the_dataset_info_entry_and_how_to_train(run_dir: Path, tmp_path: Path) -> None:
    runs = str(run_dir.parent)
    assert glassbox_in_process("label", str(run_dir), "--step", "0", "wrong", "--at", "10,10").returncode == 0
    out = tmp_path / "data" / "gb_dpo.jsonl"
    done = glassbox_in_process("export", "feedback", "--format", "dpo", "--out", str(out), "--runs-dir", runs)
    assert done.returncode == 0, done.stderr
    assert f"wrote 1 dpo record(s) for llamafactory without <think> to {out}" in done.stdout
    entry = json.loads(done.stdout.split("):\n", 1)[1].split("\nLLaMA-Factory:")[0])
    assert entry == json.loads((out.parent / "dataset_info.json").read_text())
    assert entry["gb_dpo"]["ranking"] is True
    assert f"dataset_dir: {out.parent.resolve()}" in done.stdout and "dataset: gb_dpo" in done.stdout
    swift = tmp_path / "swift" / "sft.jsonl"
    done = glassbox_in_process(
        "export", "feedback", "-f", "sft", "--flavor", "swift", "--out", str(swift), "--runs-dir", runs, "--think"
    )
    assert done.returncode == 0, done.stderr
    assert "for swift with <think>" in done.stdout and f"--dataset {swift.resolve()}" in done.stdout
    (record,) = [json.loads(line) for line in swift.read_text().splitlines()]
    assert record["messages"][-1]["content"].startswith("<think>\nThe next action is left_click at (10, 10).\n</think>\n\n")
    assert Path(record["images"][0]).is_absolute()
    done = glassbox_in_process("export", "feedback", "-f", "sft", "--flavor", "axolotl", "--out", str(swift), "--runs-dir", runs)
    assert done.returncode == 2


def squash(text: str) -> str:
    """The text without the spaces, line breaks and box lines the error panel wraps it in."""
    return "".join(c for c in text if not c.isspace() and c not in "│╭╮╰╯─")


def test_export_feedback_never_writes_into_a_recording_or_over_its_images(run_dir: Path, tmp_path: Path) -> None:
    runs = str(run_dir.parent)
    assert glassbox_in_process("label", str(run_dir), "--step", "0", "wrong", "--at", "10,10").returncode == 0
    labels_before = (run_dir / LABELS_FILE).read_bytes()
    steps_before = (run_dir / "steps.jsonl").read_bytes()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "images").write_text("not a folder")
    refused = {
        run_dir / LABELS_FILE: f"is inside the run folder {run_dir.resolve()}: an export never writes into a recording",
        run_dir / "steps.jsonl": "is inside the run folder",
        run_dir / "new" / "x.jsonl": "is inside the run folder",
        run_dir.parent / "index.sqlite3": "would replace a runs index",
        tmp_path / "afile" / "x.jsonl": f"{tmp_path / 'afile'} is a file, not a folder",
        tmp_path / "d" / "images": "the screenshots go to the folder",
        tmp_path / "taken" / "x.jsonl": "the screenshots go to the folder",
    }
    for out, message in refused.items():
        done = glassbox_in_process("export", "feedback", "-f", "sft", "--out", str(out), "--runs-dir", runs)
        assert done.returncode == 2 and squash(message) in squash(done.stderr), (out, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
    assert (run_dir / LABELS_FILE).read_bytes() == labels_before and (run_dir / "steps.jsonl").read_bytes() == steps_before
    assert not (run_dir / "new").exists() and not (tmp_path / "d").exists()


def test_unlabel_undoes_a_label_and_a_mistyped_runs_dir_is_neither_made_nor_taken_for_empty(
    run_dir: Path, tmp_path: Path
) -> None:
    runs = str(run_dir.parent)
    done = glassbox_in_process("label", str(run_dir), "--step", "0", "wrong", "--at", "10,10", "--json")
    label_id = json.loads(done.stdout)["id"]
    done = glassbox_in_process("unlabel", str(label_id), "--runs-dir", runs)
    assert done.returncode == 0 and f"label {label_id} undone" in done.stdout, done.stderr
    assert Labels(run_dir.parent).list() == []
    again = glassbox_in_process("unlabel", str(label_id), "--runs-dir", runs)  # undone already: nothing stands
    assert again.returncode == 2 and f"no label {label_id} standing" in again.stderr, again.stderr
    assert glassbox_in_process("unlabel", "99999999999999999999999", "--runs-dir", runs).returncode == 2
    typo = tmp_path / "rnus"
    listed = glassbox_in_process("labels", "--runs-dir", str(typo))
    assert listed.returncode == 0 and "(no such folder)" in listed.stdout
    out = tmp_path / "data" / "x.jsonl"
    exported = glassbox_in_process("export", "feedback", "-f", "sft", "--out", str(out), "--runs-dir", str(typo))
    assert exported.returncode == 2 and "no runs directory" in exported.stderr, exported.stderr
    assert glassbox_in_process("unlabel", "1", "--runs-dir", str(typo)).returncode == 2
    assert not typo.exists() and not out.parent.exists()
