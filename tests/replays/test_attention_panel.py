"""The run page's attention panel with a run recorded by the tiny Qwen3-VL and explained by `glassbox explain`:
its JSON, its pictures, the explain folder's route (nothing outside it served), and the panel in real Chromium
(three small multiples with their figures, the legend, the explain results; a step without maps says why).
The tiny model's outputs are noise: these tests check what is shown, not what the model looked at."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

from replays.viewer import ViewerServer
from tests.conftest import TASKS, glassbox_in_process, require_chromium
from tools.browser import BrowserExecutor, BrowserSettings
from tracer import read_steps

pytest.importorskip("torch", reason="recording attention needs torch (installed by .ci/setup)")
pytest.importorskip("transformers", reason="recording attention needs transformers (installed by .ci/setup)")

NO_MAPS_REASON = "script policy: no model"
HOSTILE = "<img src=x onerror=alert('explain')></script><script>alert(1)</script>"


@pytest.fixture(scope="module")
def chromium_module() -> None:
    require_chromium()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, tiny_model_dir, chromium_module) -> tuple[Path, str, str]:
    """A runs dir with a tiny-model run (one step, with maps, explained once) and a copy whose step has no maps."""
    runs = tmp_path_factory.mktemp("attention") / "runs"
    args = ["--policy", "qwen3vl", "--model", str(tiny_model_dir), "--max-steps", "1", "--max-new-tokens", "16"]
    proc = glassbox_in_process("run", str(TASKS / "publish_product.yaml"), *args, "--runs-dir", str(runs))
    assert proc.returncode == 1, proc.stderr  # the step limit: the noise model does not finish the task
    [run_dir] = [p for p in runs.iterdir() if p.is_dir()]
    explained = glassbox_in_process("explain", run_dir.name, "--step", "0", "--runs-dir", str(runs))
    assert explained.returncode == 0, explained.stderr
    outside = runs.parent / "outside.png"
    outside.write_bytes((run_dir / "explain" / "step0000_attention_output_deep.png").read_bytes())
    (run_dir / "explain" / "step0000_attention_linked.png").symlink_to(outside)  # a link out of the run folder
    # A record from elsewhere: markup in every text, and a picture outside the explain folder (dropped).
    crafted = json.loads((run_dir / "explain" / "step0000_attention.json").read_text())
    crafted.update(model=HOSTILE, words=[HOSTILE], targets={HOSTILE: 1}, created_at="2020-01-01T00:00:00Z")
    crafted["maps"] = [
        {**crafted["maps"][0], "key": f"{HOSTILE}/deep", "target": HOSTILE, "group": "deep"},
        {**crafted["maps"][0], "picture": "../run.json"},
    ]
    (run_dir / "explain" / "step0000_attention_crafted.json").write_text(json.dumps(crafted))
    bare = runs / "no-maps-run"
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("explain"))
    run = json.loads((bare / "run.json").read_text())
    (bare / "run.json").write_text(json.dumps({**run, "run_id": bare.name}))
    lines = []
    for raw in (bare / "steps.jsonl").read_text().splitlines():
        step = json.loads(raw)
        lines.append(json.dumps({**step, "attention": [], "unavailable": {"attention": NO_MAPS_REASON}}))
    (bare / "steps.jsonl").write_text("\n".join(lines) + "\n")
    return runs, run_dir.name, bare.name


@pytest.fixture(scope="module")
def viewer(recorded):
    with ViewerServer(recorded[0]) as server:
        yield server


def test_the_panel_json_has_three_layer_groups_per_target_with_the_recorded_figures(viewer, recorded):
    runs, run_id, _ = recorded
    [step] = read_steps(runs / run_id)
    panel = httpx.get(f"{viewer.url}/api/runs/{run_id}/steps/0/attention").json()
    assert panel["reason"] is None and panel["screenshot_size"] == list(step.screenshot_size)
    recorded_targets = {a.target for a in step.attention}
    assert {t["target"] for t in panel["targets"]} == recorded_targets and "output" in recorded_targets
    for target in panel["targets"]:
        assert [m["group"] for m in target["maps"]] == ["shallow", "middle", "deep"]
        assert [m["name"] for m in target["maps"]] == ["Early layers", "Middle layers", "Late layers"]
        for m in target["maps"]:
            ref = next(a for a in step.attention if a.key == m["key"])
            assert m["peak_px"] == list(ref.peak_px) and m["concentration"] == ref.concentration
            assert m["top"] is None or 0 < m["top"]["mass"] <= 1
    explained, crafted = panel["explain"]  # newest first
    assert crafted["model"] == HOSTILE and [m["name"] for m in crafted["maps"]] == [f"“{HOSTILE}” · Late layers"]
    record = json.loads((runs / run_id / "explain" / "step0000_attention.json").read_text())
    assert record["step"] == 0 and record["method"] == "attention" and record["targets"]
    names = {"action": "the action", "reasoning": "the reasoning", "text": "the typed text", "output": "the whole answer"}
    assert explained["title"] == "attention for " + ", ".join(names[t] for t in record["targets"])
    names = [m["name"] for m in explained["maps"]]
    assert "the whole answer · Late layers" in names and all("linked" not in n for n in names)
    for m in explained["maps"]:
        picture = httpx.get(viewer.url + m["picture"])
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert httpx.get(f"{viewer.url}/api/runs/{run_id}/steps/5/attention").status_code == 404


def test_a_map_is_drawn_small_on_request_and_bad_keys_are_refused(viewer, recorded):
    _, run_id, _ = recorded
    url = f"{viewer.url}/runs/{run_id}/steps/0/attention-view.png"
    for width, size in ((480, (480, 300)), (200, (200, 125))):
        response = httpx.get(url, params={"key": "output/deep", "width": width})
        assert response.status_code == 200
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.size == size and image.mode == "RGB"
    assert httpx.get(url, params={"key": "nothing/deep"}).status_code == 404
    assert httpx.get(url, params={"key": "../../x/deep"}).status_code == 400
    assert httpx.get(url, params={"key": "output/deep", "width": 10**6}).status_code == 400


@pytest.mark.parametrize(
    "name",
    [
        "step0000_attention_linked.png",  # a link to a file outside the run folder
        "..%2Frun.json",
        "%2E%2E%2F%2E%2E%2Foutside.png",
        "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        ".hidden.png",
        "nothing.png",
    ],
)
def test_the_explain_route_serves_nothing_outside_the_explain_folder(viewer, recorded, name):
    _, run_id, _ = recorded
    response = httpx.get(f"{viewer.url}/runs/{run_id}/explain/{name}")
    assert response.status_code == 404 and b"PNG" not in response.content[:8]


def test_the_explain_record_is_served_as_json_that_cannot_run_script(viewer, recorded):
    _, run_id, _ = recorded
    response = httpx.get(f"{viewer.url}/runs/{run_id}/explain/step0000_attention.json")
    assert response.status_code == 200 and response.json()["step"] == 0
    assert "sandbox" in response.headers["content-security-policy"]


@pytest.mark.parametrize("viewport", [(1440, 900), (1366, 768)])
def test_the_run_page_shows_three_small_multiples_with_their_figures(viewer, recorded, viewport):
    runs, run_id, bare_id = recorded
    [step] = read_steps(runs / run_id)
    with BrowserExecutor(BrowserSettings(viewport=viewport)) as browser:
        page = browser.page
        errors: list[str] = []
        dialogs: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{viewer.url}/runs/{run_id}#step-0")
        page.wait_for_selector("#attention-panel figure.attn-map")
        panel = page.locator("#attention-panel")
        assert "step 0" in panel.locator("h2").inner_text()
        maps = panel.locator(".attn-multiples").first.locator("figure.attn-map")
        assert maps.count() == 3
        assert [maps.nth(i).locator("figcaption").inner_text().split(" ")[0] for i in range(3)] == ["Early", "Middle", "Late"]
        recorded_targets = {a.target for a in step.attention}
        expected = next(t for t in ("action", "reasoning", "text", "output") if t in recorded_targets)
        assert panel.locator(".attn-multiples").first.get_attribute("data-target") == expected
        for i, group in enumerate(("shallow", "middle", "deep")):
            figure = maps.nth(i)
            ref = next(a for a in step.attention if a.target == expected and a.group == group)
            text = figure.locator("dl").inner_text()
            assert f"({ref.peak_px[0]}, {ref.peak_px[1]}) px" in text
            assert f"{ref.concentration:.2f} ({round(ref.concentration * 100)} % in the top 5 % of cells)" in text
            assert "in the box" in text
            page.wait_for_function(
                "(img) => img.complete && img.naturalWidth === 480", arg=figure.locator("img").element_handle()
            )
            box = figure.locator("img").bounding_box()
            assert box is not None and box["width"] > 250 and box["x"] + box["width"] <= viewport[0]
        if len(recorded_targets) > 1:  # another target's maps are one click away
            other = panel.locator(".attn-targets button[aria-pressed='false']").first
            other.click()
            assert panel.locator(".attn-multiples").first.get_attribute("data-target") != expected
            assert panel.locator(".attn-multiples").first.locator("figure.attn-map").count() == 3
        assert panel.locator(".attn-legend").is_visible() and panel.locator(".attn-ramp").is_visible()
        explain = panel.locator(".attn-explain figure")
        assert explain.count() == 4 + 1  # output: shallow, middle, deep, all; the crafted record's one picture
        assert "glassbox explain (2)" in panel.locator(".attn-explain h3").inner_text()
        assert HOSTILE in panel.locator(".attn-explain").inner_text()  # shown as text
        assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
        # A step without maps says why.
        page.goto(f"{viewer.url}/runs/{bare_id}#step-0")
        page.wait_for_selector("#attention-panel .attn-reason:not([hidden])")
        assert panel.locator(".attn-reason").inner_text() == f"No attention maps for this step: {NO_MAPS_REASON}."
        assert panel.locator("figure").count() == 0 and panel.locator(".attn-legend").is_hidden()
        assert errors == [] and dialogs == []
