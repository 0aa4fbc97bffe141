"""A run folder from elsewhere with crafted attention maps or sizes: the viewer answers a clear 422 (or draws a
bounded picture) without decoding what a small file would expand to, and never a 500. No browser: the viewer's
app through its test client, on a run the script policy recorded through the fake executor."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from agent import load_task, run_task
from replays.viewer import create_viewer
from tools.fake import FakeExecutor
from tracer import read_run
from tracer.attention import MAX_HEAT_SIDE, AttentionMaps
from tracer.run_files import MAX_RUN_FILE, read_step_entries

GRID = np.random.default_rng(0).random((25, 40)).astype(np.float16)


def npz(**arrays: object) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: maps
        goal: click and finish
        target: {start_url: "http://fake.invalid/"}
        script:
          - {action: left_click, coordinate: [500, 500]}
          - {action: terminate, status: success}
        """),
        encoding="utf-8",
    )
    result = run_task(load_task(path), policy="script", runs_dir=tmp_path / "runs", executor=FakeExecutor())
    return result.run_dir


def with_maps(run_dir: Path, maps: bytes, *, size: tuple[int, int] = (1280, 800)) -> None:
    """Step 0 names an attention file holding ``maps`` and says its screenshot is ``size``."""
    lines = (run_dir / "steps.jsonl").read_text().splitlines()
    step = json.loads(lines[0])
    step["screenshot_size"] = list(size)
    step["attention"] = [
        {"key": "action/deep", "target": "action", "group": "deep", "path": "steps/0000/attention.npz"}
        | {"peak_px": [1, 1], "concentration": 0.1, "entropy": 0.5}
    ]
    lines[0] = json.dumps(step)
    (run_dir / "steps.jsonl").write_text("\n".join(lines) + "\n")
    (run_dir / "steps" / "0000" / "attention.npz").write_bytes(maps)


def get(run_dir: Path, path: str, *, api: bool = False) -> tuple[int, str, bytes]:
    client = TestClient(create_viewer(run_dir.parent), base_url="http://127.0.0.1")
    response = client.get(f"{'/api' if api else ''}/runs/{run_dir.name}/steps/0/{path}")
    return response.status_code, response.headers.get("content-type", ""), response.content


PICTURES = ("attention.png?key=action%2Fdeep", "attention-view.png?key=action%2Fdeep&width=480")

CRAFTED = [
    # (id, arrays, what the 422 says)
    ("past-the-grid-limit", {"action__deep": np.zeros((2000, 2000), np.float16)}, "has shape (2000, 2000)"),
    ("a-scalar", {"action__deep": np.float32(1)}, "has shape ()"),
    ("three-dimensional", {"action__deep": np.zeros((2, 3, 4), np.float32)}, "has shape (2, 3, 4)"),
    ("empty", {"action__deep": np.zeros((0, 5), np.float32)}, "has shape (0, 5)"),
    ("strings", {"action__deep": np.array(["a", "b"])}, "not numbers"),
    ("not-finite", {"action__deep": np.full((5, 5), np.nan, np.float32)}, "not finite numbers"),
    ("bad-resized-size", {"action__deep": GRID, "resized_size": np.array([0, -1])}, "resized_size"),
]


@pytest.mark.parametrize(("arrays", "says"), [c[1:] for c in CRAFTED], ids=[c[0] for c in CRAFTED])
def test_crafted_maps_are_a_clear_422_and_are_not_decoded(recorded: Path, arrays: dict[str, object], says: str) -> None:
    with_maps(recorded, npz(**({"resized_size": np.array([1280, 800])} | arrays)))
    with pytest.raises(ValueError, match=r"\(|not|resized_size"):
        AttentionMaps.load(recorded / "steps" / "0000" / "attention.npz")
    for picture in PICTURES:
        status, _, body = get(recorded, picture)
        assert status == 422 and says in json.loads(body)["error"], (picture, body[:300])
    status, _, body = get(recorded, "attention", api=True)  # the panel still lists the maps' figures
    assert status == 200 and b"action/deep" in body


def test_a_file_that_is_not_an_npz_is_named(recorded: Path) -> None:
    with_maps(recorded, b"hello")
    status, _, body = get(recorded, PICTURES[0])
    assert status == 422 and "is not an .npz file" in json.loads(body)["error"]


def test_real_maps_still_draw(recorded: Path) -> None:
    with_maps(recorded, npz(resized_size=np.array([1280, 800]), action__deep=GRID))
    for picture in PICTURES:
        status, kind, body = get(recorded, picture)
        assert status == 200 and kind == "image/png"
    with Image.open(io.BytesIO(get(recorded, PICTURES[0])[2])) as image:
        assert image.size == (1280, 800)


def test_a_screenshot_size_past_any_screen_makes_the_step_unreadable(recorded: Path) -> None:
    with_maps(recorded, npz(resized_size=np.array([1280, 800]), action__deep=GRID), size=(100_000, 100_000))
    [first, *_] = read_step_entries(recorded)
    assert "screenshot_size" in getattr(first, "unreadable", "")
    assert get(recorded, PICTURES[0])[0] == 404  # no such step to draw at 10^10 pixels


def test_a_large_real_screen_gets_a_heat_layer_of_bounded_size(recorded: Path) -> None:
    with_maps(recorded, npz(resized_size=np.array([1280, 800]), action__deep=GRID), size=(16384, 8192))
    status, _, body = get(recorded, PICTURES[0])
    assert status == 200
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (MAX_HEAT_SIDE, MAX_HEAT_SIDE // 2)


def test_an_oversize_run_record_is_refused_unread(recorded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracer.run_files

    assert read_run(recorded).run_id == recorded.name
    monkeypatch.setattr(tracer.run_files, "MAX_RUN_FILE", 100)
    with pytest.raises(ValueError, match="larger than"):
        read_run(recorded)
    assert MAX_RUN_FILE >= 2**20  # the real limit leaves room for any task
