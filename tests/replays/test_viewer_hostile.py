"""The viewer under hostile input: DNS rebinding, writes from other origins, crafted run folders, hostile
titles and notes, oversize bodies and malformed requests. Real uvicorn on 127.0.0.1, real Chromium."""

from __future__ import annotations

import json
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from replays.viewer import ViewerServer, create_viewer
from replays.viewer.graph_svg import graph_svg
from replays.viewer.safe import json_for_script
from tests.conftest import copy_bundled_run
from tests.servers import LocalServer, QuietHandler
from tracer import RunStatus, read_steps

HOSTILE_TITLE = "</script><script>alert('title')</script><!--<script> \u2028 & done"
HOSTILE_NOTE = "</script><!--<script>alert('note')</script>"
SHOT_PAYLOAD = 'x" onerror="alert(1)'
CROP_PAYLOAD = 'x" onerror="alert(2)" data-x="<script>alert(\'crop\')</script>'


def craft(runs: Path, source: Path) -> str:
    """A run folder from elsewhere: a real recording, then run.json and steps.jsonl edited by hand."""
    target = runs / "hostile-run"
    shutil.copytree(source, target)
    run = json.loads((target / "run.json").read_text())
    run.update(run_id="hostile-run", task_name=HOSTILE_TITLE, end_reason="<!--<script>")
    run["task"]["goal"] = "<img src=x onerror=alert('goal')>"
    run["goal"] = "<img src=x onerror=alert('goal')>"  # the goal as given, which the run page shows
    (target / "run.json").write_text(json.dumps(run))
    lines = []
    for raw in (target / "steps.jsonl").read_text().splitlines():
        step = json.loads(raw)
        step.update(
            title="<!--<script>",
            url="javascript:alert('url')",
            reasoning="</script><script>alert('reasoning')</script>\u2028<!--<script>",
        )
        if step["index"] == 0:
            step["screenshot"] = SHOT_PAYLOAD
        if step.get("evidence"):
            step["evidence"]["crop"] = CROP_PAYLOAD
        if step.get("element"):
            step["element"]["text"] = "<img src=x onerror=alert('element')>"
        lines.append(json.dumps(step))
    (target / "steps.jsonl").write_text("\n".join(lines) + "\n")
    (target / "evil.html").write_text("<script>alert('served')</script>")
    (target / "steps" / "passwd.png").symlink_to("/etc/passwd")
    return "hostile-run"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, bundled_run) -> tuple[Path, str, str]:
    runs = tmp_path_factory.mktemp("runs")
    result = copy_bundled_run(bundled_run, runs)
    assert result.status is RunStatus.succeeded
    return runs, result.run_id, craft(runs, result.run_dir)


@pytest.fixture(scope="module")
def viewer(runs) -> Iterator[ViewerServer]:
    with ViewerServer(runs[0]) as server:
        yield server


@pytest.fixture(scope="module")
def own(viewer) -> dict[str, str]:
    """The headers the viewer's own page sends on a write: its origin and the token read from the page."""
    page = httpx.get(viewer.url + "/")
    token = re.search(r'<meta name="glassbox-token" content="([^"]+)">', page.text)
    assert token is not None and token.group(1) == viewer.token
    return {"Origin": viewer.url, "X-Glassbox-Token": token.group(1)}


@pytest.fixture(scope="module")
def chromium_rebinding() -> Iterator[Any]:
    """Real Chromium in which evil.example resolves to 127.0.0.1: a DNS-rebinding page, without a DNS server."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import require_chromium
    from tools.chromium import LAUNCH_ARGS, find_chromium

    require_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(find_chromium()),
            headless=True,
            args=[*LAUNCH_ARGS, "--host-resolver-rules=MAP evil.example 127.0.0.1"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium_rebinding) -> Iterator[Any]:
    context = chromium_rebinding.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.dialogs = []
    page.csp_violations = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_violations.append(m.text))
    yield page
    context.close()


def labels_of(viewer: ViewerServer, run_id: str) -> list[dict[str, Any]]:
    return httpx.get(f"{viewer.url}/api/runs/{run_id}").json()["labels"]


# --- Host: DNS rebinding --------------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/", None),
    ("GET", "/runs/{run}", None),
    ("GET", "/runs/{run}/files/run.json", None),
    ("GET", "/static/viewer.js", None),
    ("GET", "/static/viewer.css", None),
    ("GET", "/api/runs", None),
    ("GET", "/api/runs/rows?order=least_confident", None),
    ("GET", "/static/graph.js", None),
    ("GET", "/static/runs.js", None),
    ("GET", "/api/runs/{run}", None),
    ("GET", "/api/runs/{run}/graph", None),
    ("GET", "/api/runs/{run}/events", None),
    ("GET", "/diff?a={run}&b={run}", None),
    ("GET", "/runs/{run}/wait", None),
    ("GET", "/no/such/route", None),
    ("POST", "/api/runs/{run}/steps/0/labels", {"verdict": "correct"}),
    ("POST", "/api/runs/{run}/replay", {"fallback": "none"}),
    ("DELETE", "/api/labels/1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_a_rebinding_host_is_refused_on_every_route(viewer, runs, own, method, path, body):
    _, run_id, _ = runs
    evil = f"evil.example:{viewer.port}"
    headers = {**own, "Host": evil, "Origin": f"http://{evil}"}
    response = httpx.request(method, viewer.url + path.format(run=run_id), json=body, headers=headers)
    assert response.status_code == 421
    assert response.json()["error"].startswith(f"this viewer answers only requests addressed to 127.0.0.1:{viewer.port}")
    assert "evil.example" in response.json()["error"]
    assert labels_of(viewer, run_id) == []


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("[::1]:{port}", 200),
        ("LOCALHOST:{port}", 200),
        ("127.0.0.1:{other}", 421),
        ("evil.example", 421),
        ("127.0.0.1", 421),
        ("127.0.0.1.evil.example:{port}", 421),
        ("localhost:{port}.evil.example", 421),
        ("127.0.0.1:{port}@evil.example", 421),
        ("[::1:{port}", 421),
        ("", 421),
    ],
)
def test_only_the_hosts_the_viewer_listens_on_are_accepted(viewer, host, status):
    header = host.format(port=viewer.port, other=viewer.port + 1 if viewer.port < 65535 else 1)
    assert httpx.get(viewer.url + "/api/runs", headers={"Host": header}).status_code == status


def test_a_request_without_host_is_refused(viewer):
    with socket.create_connection(("127.0.0.1", viewer.port), timeout=30) as sock:
        sock.sendall(b"GET /api/runs HTTP/1.0\r\n\r\n")
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 421 ")


def test_the_host_given_with_host_is_accepted(runs):
    from starlette.testclient import TestClient

    with TestClient(create_viewer(runs[0], host="glassbox.lan"), base_url="http://127.0.0.1:8600") as client:
        assert client.get("/api/runs", headers={"Host": "glassbox.lan:8600"}).status_code == 200
        assert client.get("/api/runs", headers={"Host": "glassbox.lan:8601"}).status_code == 421
        assert client.get("/api/runs", headers={"Host": "evil.example:8600"}).status_code == 421
    with TestClient(create_viewer(runs[0]), base_url="http://127.0.0.1:8600") as client:
        assert client.get("/api/runs", headers={"Host": "glassbox.lan:8600"}).status_code == 421
        assert client.get("/api/runs", headers={"Host": "127.0.0.1:8600"}).status_code == 200


def test_a_rebinding_page_in_chromium_reads_nothing(viewer, runs, page):
    _, run_id, _ = runs
    evil = f"http://evil.example:{viewer.port}"
    response = page.goto(f"{evil}/runs/{run_id}")
    assert response.status == 421 and "421 Misdirected Request" in page.inner_text("h1")
    assert "addressed to" in page.inner_text("body") and run_id not in page.content()
    # Script on the rebinding page is same-origin with evil.example and so may read responses: all are refusals.
    statuses = page.evaluate(
        """async (run) => {
        const out = {};
        for (const url of ["/api/runs", `/api/runs/${run}`, "/static/viewer.js", `/api/runs/${run}/events`,
                           `/runs/${run}/files/run.json`]) out[url] = (await fetch(url)).status;
        const post = await fetch(`/api/runs/${run}/steps/0/labels`, {method: "POST",
            headers: {"Content-Type": "application/json"}, body: JSON.stringify({verdict: "wrong", note: "x"})});
        out.post = post.status;
        return out;
    }""",
        run_id,
    )
    assert set(statuses.values()) == {421}, statuses
    assert labels_of(viewer, run_id) == []


# --- Writes: same origin and the per-server token -------------------------------------------------------------------


def test_writes_need_the_same_origin_and_the_token_from_the_page(viewer, runs, own):
    _, run_id, _ = runs
    url = f"{viewer.url}/api/runs/{run_id}/steps/2/labels"
    body = {"verdict": "correct"}
    refused = [
        {"Origin": viewer.url},  # no token
        {**own, "X-Glassbox-Token": "guessed"},
        {**own, "X-Glassbox-Token": own["X-Glassbox-Token"][:-1]},
        {**own, "Origin": "http://evil.example"},
        {**own, "Origin": "null"},
        {**own, "Origin": f"http://localhost:{viewer.port}"},  # another origin, even if it is the same server
        {**own, "Sec-Fetch-Site": "cross-site"},
        {**own, "Sec-Fetch-Site": "same-site"},
        {"X-Glassbox-Token": own["X-Glassbox-Token"]},  # token, but nothing says where the request comes from
        {"X-Glassbox-Token": own["X-Glassbox-Token"], "Referer": "http://evil.example/page"},
    ]
    for headers in refused:
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == 403, headers
        assert "refused" in response.json()["error"]
    assert (
        httpx.post(
            f"{viewer.url}/api/runs/{run_id}/replay", json={"fallback": "none"}, headers={"Origin": viewer.url}
        ).status_code
        == 403
    )
    assert labels_of(viewer, run_id) == []

    made = httpx.post(url, json=body, headers=own)
    assert made.status_code == 201 and made.json()["step"] == 2
    via_referer = {"X-Glassbox-Token": own["X-Glassbox-Token"], "Referer": f"{viewer.url}/runs/{run_id}"}
    assert httpx.post(url, json=body, headers=via_referer).status_code == 201
    same_origin_fetch = {"X-Glassbox-Token": own["X-Glassbox-Token"], "Sec-Fetch-Site": "same-origin"}
    assert httpx.post(url, json=body, headers=same_origin_fetch).status_code == 201
    ids = [lbl["id"] for lbl in labels_of(viewer, run_id)]
    assert len(ids) == 3

    for headers in ({"Origin": viewer.url}, {**own, "Origin": "http://evil.example"}):
        assert httpx.delete(f"{viewer.url}/api/labels/{ids[0]}", headers=headers).status_code == 403
    assert len(labels_of(viewer, run_id)) == 3
    for label_id in ids:
        assert httpx.delete(f"{viewer.url}/api/labels/{label_id}", headers=own).status_code == 204
    assert labels_of(viewer, run_id) == []


def test_a_page_on_another_origin_cannot_label_or_read(viewer, runs, page):
    _, run_id, _ = runs

    class Attacker(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.reply(200, b"<!doctype html><title>attacker</title>", "text/html")

    server = LocalServer(Attacker).start()
    try:
        page.goto(f"{server.url}/")
        result = page.evaluate(
            """async ([base, run]) => {
            const out = {};
            const labels = `${base}/api/runs/${run}/steps/1/labels`;
            // A "simple" request needs no preflight: it reaches the server, which must refuse it.
            // (Its answer, a 403, is also withheld from the page: Cross-Origin-Resource-Policy: same-origin.)
            try {
                await fetch(labels, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
                                     body: JSON.stringify({verdict: "correct"})});
                out.simple = "answered";
            } catch (e) { out.simple = "withheld"; }
            try {
                await fetch(labels, {method: "POST", headers: {"Content-Type": "application/json",
                    "X-Glassbox-Token": "guessed"}, body: JSON.stringify({verdict: "correct"})});
                out.preflighted = "sent";
            } catch (e) { out.preflighted = "blocked"; }
            try { await (await fetch(`${base}/api/runs/${run}`)).json(); out.read = "read"; }
            catch (e) { out.read = "blocked"; }
            const form = document.createElement("form");
            form.method = "POST"; form.action = `${base}/api/runs/${run}/replay`;
            form.enctype = "text/plain";
            const field = document.createElement("input");
            field.name = '{"fallback": "none", "x": "'; field.value = '"}';
            form.appendChild(field); document.body.appendChild(form);
            return out;
        }""",
            [viewer.url, run_id],
        )
        assert result == {"simple": "withheld", "preflighted": "blocked", "read": "blocked"}
        with page.expect_navigation() as navigation:
            page.evaluate("document.forms[0].submit()")
        assert navigation.value.status == 403 and "/wait" not in page.url
    finally:
        server.close()
    assert labels_of(viewer, run_id) == []


# --- Crafted run folders and hostile text in real Chromium ----------------------------------------------------------


def test_a_crafted_run_folder_runs_no_script_and_still_shows_its_steps(viewer, runs, page):
    runs_dir, _, hostile = runs
    steps = read_steps(runs_dir / hostile)
    page.goto(f"{viewer.url}/runs/{hostile}#step-0")
    assert page.text_content("h1") == HOSTILE_TITLE
    assert page.locator(".film").count() == len(steps)
    for index in range(len(steps)):
        assert page.inner_text("#step-title").startswith(f"Step {index} ·")
        assert "alert('reasoning')" in page.inner_text("pre.reasoning")
        page.keyboard.press("ArrowRight")
    with_evidence = next(s.index for s in steps if s.evidence is not None)
    page.goto(f"{viewer.url}/runs/{hostile}#step-0")
    page.locator(f"#graph a[data-step='{with_evidence}']").first.click()
    assert page.inner_text("#step-title").startswith(f"Step {with_evidence} ·")
    assert (
        page.locator("img.crop")
        .get_attribute("src")
        .endswith("/files/x%22%20onerror%3D%22alert(2)%22%20data-x%3D%22%3Cscript%3Ealert('crop')%3C/script%3E")
    )  # '/' stays a separator
    assert "<img src=x onerror=alert('element')>" in page.inner_text("#details")
    assert page.locator(".film img").first.get_attribute("src").endswith("/files/x%22%20onerror%3D%22alert(1)")
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    # No script but the page's own: the JSON block and files from /static/ (viewer.js, confidence.js, attention.js...).
    scripts = page.evaluate("[...document.scripts].map((s) => [s.type, s.getAttribute('src')])")
    assert scripts.count(["application/json", None]) == 1
    assert all(src is not None and src.startswith("/static/") for kind, src in scripts if kind != "application/json")
    assert ["", "/static/viewer.js"] in scripts
    assert "<img src=x onerror=alert('goal')>" in page.text_content("details.goal")
    page.goto(viewer.url + "/")
    assert HOSTILE_TITLE in page.text_content("table.runs")
    # Its step 0 screenshot is missing: the diff says so (a 422 page naming the file), or compares without it.
    diff = page.goto(f"{viewer.url}/diff?a={runs[1]}&b={hostile}")
    assert (diff.status == 200 and "difference" in page.inner_text("#verdict")) or (
        diff.status == 422 and "cannot compare" in page.inner_text("body") and SHOT_PAYLOAD in page.inner_text("body")
    )
    with page.expect_download() as download:
        page.evaluate("(url) => { location.href = url; }", f"/runs/{hostile}/files/evil.html")
    assert download.value.suggested_filename == "evil.html"
    assert page.dialogs == [] and page.csp_violations == []


def test_labelling_in_the_real_ui_with_a_hostile_note_keeps_the_page_whole(viewer, runs, page):
    _, run_id, _ = runs
    page.goto(f"{viewer.url}/runs/{run_id}#step-3")
    page.click("#mark-wrong")
    box = page.locator("#shot").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.select_option("#fix-action", "left_click")
    page.fill("#fix-note", HOSTILE_NOTE)
    page.click("#fix-save")
    page.wait_for_selector("ul.labels li.wrong")
    page.click("#mark-correct")
    page.wait_for_selector("ul.labels li.correct")
    page.reload()
    page.wait_for_selector("ul.labels li.wrong")
    steps = len(read_steps(runs[0] / run_id))
    assert page.locator(".film").count() == steps and page.inner_text("#step-title").startswith("Step 3")
    assert HOSTILE_NOTE in page.inner_text("ul.labels li.wrong")
    assert page.locator(".film .marks").nth(3).inner_text() == "✓"  # the last label of step 3: correct
    page.screenshot(path="/tmp/viewer_run.png", full_page=True)
    for left in (1, 0):  # one at a time: a second click before the list is redrawn would undo the same label again
        page.locator("button.undo").first.click()
        page.wait_for_function(f"document.querySelectorAll('ul.labels li').length === {left}")
    assert labels_of(viewer, run_id) == []
    assert page.dialogs == [] and page.csp_violations == []


def test_embedded_json_cannot_end_its_script_block():
    hostile = {"t": "</script><!--<script>&\u2028\u2029>", "n": ["</SCRIPT>"]}
    text = json_for_script(hostile)
    assert json.loads(text) == hostile
    assert not set("<>&\u2028\u2029") & set(text)


def test_graph_labels_are_escaped():
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_node("a", kind='"><script>', label="<script>alert(1)</script>", step=0)
    svg = graph_svg(graph)
    assert "<script" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg


# --- Files, bodies, malformed requests --------------------------------------------------------------------------------


def test_files_come_only_from_inside_the_run_folder_and_cannot_run_script(viewer, runs):
    _, _, hostile = runs
    base = f"{viewer.url}/runs/{hostile}/files"
    assert httpx.get(f"{base}/steps/passwd.png").status_code == 404  # a link out of the folder
    assert httpx.get(f"{base}/{SHOT_PAYLOAD}").status_code == 404
    served = httpx.get(f"{base}/evil.html")
    assert served.status_code == 200 and served.headers["content-type"] == "application/octet-stream"
    assert served.headers["content-disposition"].startswith("attachment")
    assert "sandbox" in served.headers["content-security-policy"]
    assert served.headers["x-content-type-options"] == "nosniff"
    shot = read_steps(runs[0] / runs[1])[0].screenshot
    image = httpx.get(f"{viewer.url}/runs/{runs[1]}/files/{shot}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"


def test_an_oversize_declared_body_is_refused_before_it_is_sent(viewer, runs, own):
    _, run_id, _ = runs
    with socket.create_connection(("127.0.0.1", viewer.port), timeout=30) as sock:
        sock.sendall(_request_head(viewer, own, f"/api/runs/{run_id}/steps/0/labels", "Content-Length: 1000000000"))
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 413 ") and b"over the limit of 64000 bytes" in reply


def test_an_oversize_streamed_body_is_cut_off_at_the_limit(viewer, runs, own):
    _, run_id, _ = runs
    with socket.create_connection(("127.0.0.1", viewer.port), timeout=30) as sock:
        sock.sendall(_request_head(viewer, own, f"/api/runs/{run_id}/steps/0/labels", "Transfer-Encoding: chunked"))
        chunk = b'{"note": "' + b"x" * 20_000
        for _ in range(4):  # 80 kB of a body that never ends: the answer comes without the rest
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 413 ") and b"over the limit of 64000 bytes" in reply
    assert labels_of(viewer, run_id) == []


MALFORMED: list[tuple[str, str, dict[str, Any], int]] = [
    ("POST", "/api/runs/{run}/steps/1/labels", {"content": b"{"}, 400),
    ("POST", "/api/runs/{run}/steps/1/labels", {"content": b"\xff\xfe{}"}, 400),
    ("POST", "/api/runs/{run}/steps/1/labels", {"content": b"[" * 50_000}, 400),
    ("POST", "/api/runs/{run}/steps/1/labels", {"content": b"1" * 5000}, 400),
    ("POST", "/api/runs/{run}/steps/1/labels", {"json": [1, 2]}, 422),
    ("POST", "/api/runs/{run}/steps/1/labels", {"json": {"verdict": "wrong", "correction": "left"}}, 422),
    ("POST", "/api/runs/{run}/steps/abc/labels", {"json": {"verdict": "correct"}}, 400),
    ("POST", "/api/runs/{run}/steps/-1/labels", {"json": {"verdict": "correct"}}, 400),
    ("POST", "/api/runs/{run}/steps/" + "9" * 30 + "/labels", {"json": {"verdict": "correct"}}, 400),
    ("POST", "/api/runs/{run}/steps/999/labels", {"json": {"verdict": "correct"}}, 404),
    ("POST", "/api/runs/nope/steps/1/labels", {"json": {"verdict": "correct"}}, 404),
    ("POST", "/api/runs/{run}/replay", {"json": {"from_step": "1"}}, 422),
    ("POST", "/api/runs/{run}/replay", {"json": {"from_step": True}}, 422),
    ("POST", "/api/runs/{run}/replay", {"json": {"from_step": 9999}}, 422),
    ("POST", "/api/runs/{run}/replay", {"json": {"fallback": "rm -rf"}}, 422),
    ("POST", "/api/runs/{run}/replay", {"json": {"unknown": 1}}, 422),
    ("POST", "/api/runs/{run}/replay", {"content": b"fallback=none", "headers": {"Content-Type": "text/plain"}}, 415),
    ("POST", "/api/runs/nope/replay", {"json": {}}, 404),
    ("DELETE", "/api/labels/abc", {}, 400),
    ("DELETE", "/api/labels/" + "9" * 30, {}, 400),
    ("DELETE", "/api/labels/123456789", {}, 404),
    ("GET", "/api/runs?limit=0", {}, 400),
    ("GET", "/api/runs?limit=abc", {}, 400),
    ("GET", "/api/runs?offset=-1", {}, 400),
    ("GET", "/api/runs?offset=" + "9" * 30, {}, 400),
    ("GET", "/api/runs/nope", {}, 404),
    ("GET", "/api/runs/%00", {}, 404),
    ("GET", "/api/runs/*", {}, 404),
    ("GET", "/api/runs/{run}/events?after=abc", {}, 400),
    ("GET", "/api/runs/{run}/events?after=-5", {}, 400),
    ("GET", "/api/runs/{run}/graph/extra", {}, 404),
    ("PUT", "/api/runs/{run}", {}, 405),
    ("GET", "/runs/{run}/steps/0/attention.png?key=bad", {}, 400),
    ("GET", "/runs/{run}/steps/0/attention.png?key=action/deep", {}, 404),
    ("GET", "/runs/{run}/steps/x/attention.png?key=action/deep", {}, 400),
    ("GET", "/runs/{run}/files/%00", {}, 404),
    ("GET", "/runs/{run}/files/" + "a" * 5000, {}, 404),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), MALFORMED)
def test_malformed_api_requests_are_a_clear_4xx(viewer, runs, own, method, path, kwargs, status):
    _, run_id, _ = runs
    kwargs = {**kwargs, "headers": {**own, "Content-Type": "application/json", **kwargs.get("headers", {})}}
    response = httpx.request(method, viewer.url + path.format(run=run_id), **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] and "Traceback" not in response.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/?page=0", 400),
        ("/?page=abc", 400),
        ("/?page=" + "9" * 30, 400),
        ("/runs/nope", 404),
        ("/runs/a%2Fb", 404),
        ("/diff", 400),
        ("/diff?a=nope&b=nope", 404),
        ("/runs/never-started/wait", 404),
        ("/static/nope.js", 404),
        ("/no/such/page", 404),
        ("/runs/broken-run", 422),
    ],
)
def test_malformed_page_requests_are_a_small_html_page(viewer, runs, path, status):
    broken = runs[0] / "broken-run"
    broken.mkdir(exist_ok=True)
    (broken / "run.json").write_text("{")
    response = httpx.get(viewer.url + path, headers={"Accept": "text/html,*/*;q=0.8"})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert f"<h1>{status} " in response.text and "Back to the runs" in response.text
    assert httpx.get(viewer.url + "/").status_code == 200  # the other runs still list
    assert httpx.get(f"{viewer.url}/runs/{runs[1]}").status_code == 200


def _request_head(viewer: ViewerServer, own: dict[str, str], path: str, length: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{viewer.port}\r\nOrigin: {own['Origin']}\r\n"
        f"X-Glassbox-Token: {own['X-Glassbox-Token']}\r\nContent-Type: application/json\r\n{length}\r\n\r\n"
    ).encode()


def _read_all(sock: socket.socket) -> bytes:
    """The server's reply: read until it closes the connection or has sent the whole declared body."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
        if sep and length and len(body) >= int(length.group(1)):
            break
    return data
