"""Secrets never leak: the scrubber's forms and fragments, and end to end (real Chromium, real shop, a real
search page) zero hits for any form of any secret in the run folders, the index, the CLI, the viewer and
every export, with runs built so that the secret really is there to leak (a filled password field the
agent clicks into, checks that echo the page, a secret typed as plain text, a secret in a URL).
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, NamedTuple
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import httpx
import pytest
import yaml

from tests.conftest import ROOT, TASKS, glassbox_in_process
from tests.servers import LocalServer, QuietHandler
from tools.views import Box, ElementInfo
from tracer.schema import CheckResult, PromptMessage, RunRecord, RunStatus, StepRecord, StepTimings
from tracer.secrets import MASK, Scrubber
from tracer.store import RunWriter, read_run, read_steps


def _secret(prefix: str, length: int, seed: str) -> str:
    """A secret with every character that changes under an encoding, then hex to the wanted length."""
    tail = ""
    while len(prefix) + len(tail) < length:
        tail += hashlib.sha256((seed + tail).encode()).hexdigest()
    return (prefix + tail)[:length]


# Long (env) password: more than the 200 characters an element's text is cut to. No braces (task placeholders).
PASSWORD = _secret("Pw\\\"<&>' +/%é#@~", 300, "password")
QUERY = _secret("Qk\"<&>' +/%é\\$", 64, "query")
BUNDLED = "Xq7-tulip-4821"


def forms(secret: str) -> set[str]:
    """The encodings the issue names: plain, JSON-escaped (both ways), URL-encoded, HTML-escaped."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        html.escape(secret),
        html.escape(secret, quote=False),
    }


def needles(secret: str, *, fragments: bool = True) -> set[str]:
    """Every form, plus long prefixes and 8-character fragments of each (from several offsets)."""
    found = set()
    for form in forms(secret):
        found.add(form)
        if fragments:
            found.add(form[:200])
            found.add(form[-40:])
            for offset in (0, 3, 11, 37, 64, 101, 150, 192, 199, 250, len(form) - 8):
                if 0 <= offset <= len(form) - 8:
                    found.add(form[offset : offset + 8])
    return found


ALL_NEEDLES = {BUNDLED: needles(BUNDLED, fragments=False), "PASSWORD": needles(PASSWORD), "QUERY": needles(QUERY)}


def hits(data: bytes | str, where: str) -> list[str]:
    text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
    return [f"{where}: {name} as {needle!r}" for name, group in ALL_NEEDLES.items() for needle in group if needle in text]


# -- the scrubber on its own --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    sorted(forms(PASSWORD))
    + [repr(PASSWORD)[1:-1], PASSWORD[:200], PASSWORD[57:65], json.dumps(PASSWORD[:150])[1:-1], quote(PASSWORD[40:90])],
)
def test_every_form_and_long_fragment_is_masked(form):
    out = Scrubber([PASSWORD]).scrub_text(f"before {form} after")
    assert out == f"before {MASK} after"


def test_short_fragments_and_other_text_are_kept():
    scrubber = Scrubber(["correct horse battery"])
    assert scrubber.scrub_text("a horse,battery,correct") == "a horse,battery,correct"  # no shared run of 8
    assert scrubber.scrub_text("the horse battery staple") == f"the{MASK} staple"  # " horse battery": 14 chars
    assert Scrubber(["hunter2"]).scrub_text("pw=hunter2;") == f"pw={MASK};"
    assert Scrubber([]).scrub_text("hunter2") == "hunter2"


def test_placeholders_of_a_secret_that_contains_its_name_survive():
    scrubber = Scrubber.from_secrets({"password": "password123!"})
    text = "type <secret>password</secret> into {password}; the value was password123! then password12"
    assert scrubber.scrub_text(text) == f"type <secret>password</secret> into {{password}}; the value was {MASK} then {MASK}"
    assert scrubber.scrub({"password": "x"}) == {"password": "x"}  # the name as a key is not the secret
    # A name holding the whole secret is not protected.
    assert Scrubber.from_secrets({"pw": "pw"}).scrub_text("<secret>pw</secret>") == f"<secret>{MASK}</secret>"


def test_models_and_containers_come_back_masked_with_their_types():
    scrubber = Scrubber.from_secrets({"password": PASSWORD})
    element = ElementInfo(tag="input", text=PASSWORD[:200], box=Box(x=1, y=2, width=3, height=4))
    step = StepRecord(
        index=0,
        started_at=datetime.now(timezone.utc),
        timings=StepTimings(),
        url=f"http://h/s?q={quote_plus(PASSWORD)}",
        title=f"Results for {PASSWORD}",
        screenshot="steps/0000/screenshot.png",
        screenshot_size=(10, 10),
        policy="x",
        prompt=[PromptMessage(role="user", text=f"pw {PASSWORD}")],
        raw_output='<tool_call>{"arguments": {"text": ' + json.dumps(PASSWORD) + "}}</tool_call>",
        reasoning=None,
        tool_calls=[{"name": "computer_use", "arguments": {"text": PASSWORD, PASSWORD: [PASSWORD, (1, PASSWORD)]}}],
        action={"action": "type", "text": PASSWORD},
        element=element,
        confidence=None,
        outcome="ok",
    )
    masked = scrubber.scrub(step)
    assert masked.prompt is not None and masked.element is not None and step.element is not None
    assert type(masked) is StepRecord and type(masked.element) is ElementInfo
    assert type(masked.prompt[0]) is PromptMessage
    assert masked.element.text == MASK and masked.element.box == element.box
    assert masked.url == f"http://h/s?q={MASK}" and masked.title == f"Results for {MASK}"
    assert masked.raw_output == '<tool_call>{"arguments": {"text": "' + MASK + '"}}</tool_call>'
    assert [c.model_dump() for c in masked.tool_calls] == [
        {"name": "computer_use", "arguments": {"text": MASK, MASK: [MASK, (1, MASK)]}}
    ]
    assert masked.prompt[0].text == f"pw {MASK}"
    assert step.element.text == PASSWORD[:200]  # the input is left as it was
    assert not hits(masked.model_dump_json(), "step")
    clean = CheckResult(type="js", description="d", passed=True, detail="fine")
    assert scrubber.scrub(clean) is clean  # nothing to mask: no copy


@pytest.mark.parametrize(
    "written",
    [
        "pw=Gx%7E4p%21Lq%7E8%23Tz%7E2w",  # a GET form as Chromium encodes it: ~ as %7E, where quote() keeps ~
        "pw=Gx%7e4p%21Lq%7e8%23Tz%7e2w",
        "/k/" + "".join(f"%{b:02X}" for b in b"Gx~4p!Lq~8#Tz~2w"),  # every character percent-encoded
        "/k/" + "".join(f"%{b:02x}" for b in b"Gx~4p!Lq~8#Tz~2w"),
    ],
)
def test_urls_a_browser_or_a_page_encodes_otherwise_are_masked(written):
    secret = "Gx~4p!Lq~8#Tz~2w"  # a ~ every 7 characters: no 8-character run of another form survives
    out = Scrubber([secret]).scrub_text(f"{written}&next=1")
    assert "Gx" not in out and MASK in out, out


@pytest.mark.parametrize(
    ("secret", "written"),
    [
        ("Pässwörd-9", "pw=P%E4ssw%F6rd-9"),  # a page without <meta charset>: its GET form goes as windows-1252
        ("Pässwörd-9", "pw=P%e4ssw%f6rd-9"),
        ("Tür€-schlüssel", "pw=T%FCr%80-schl%FCssel"),  # € is 0x80 in windows-1252
        ("пароль-42", "pw=%EF%E0%F0%EE%EB%FC-42"),  # windows-1251
        ("密码-Sesam-7", "q=%C3%DC%C2%EB-Sesam-7"),  # GBK
        ("Zwölf-Ω-9", "pw=Zw%F6lf-%26%23937%3B-9"),  # Ω is not in windows-1252: sent as &#937;
    ],
)
def test_a_secret_a_form_sends_in_a_legacy_encoding_is_masked(secret, written):
    out = Scrubber([secret]).scrub_text(f"GET /login?u=ada&{written}&next=1")
    assert out == f"GET /login?u=ada&{written.split('=')[0]}={MASK}&next=1", out


def test_a_megabyte_of_raw_output_is_masked_whole():
    scrubber = Scrubber.from_secrets({"password": PASSWORD})
    chunk = "lorem ipsum dolor sit amet, " * 300 + json.dumps({"text": PASSWORD}) + "\n" * 500
    text = chunk * (1_000_000 // len(chunk) + 1)
    out = scrubber.scrub_text(text)
    assert out.count(MASK) == text.count(json.dumps(PASSWORD)[1:-1]) > 50
    assert not hits(out[:200_000], "scrubbed")
    assert out.replace('{"text": "' + MASK + '"}', "") == text.replace(json.dumps({"text": PASSWORD}), "")


def test_the_writer_masks_steps_run_json_and_the_index(tmp_path):
    scrubber = Scrubber.from_secrets({"password": PASSWORD})
    record = RunRecord(
        run_id="r1",
        task_name="t",
        task_file=None,
        task={"goal": f"use {PASSWORD}"},
        policy="script",
        status=RunStatus.running,
        started_at=datetime.now(timezone.utc),
        pid=os.getpid(),
        host="h",
    )
    writer = RunWriter.create(tmp_path, record, scrubber=scrubber)
    step = StepRecord(
        index=0,
        started_at=datetime.now(timezone.utc),
        timings=StepTimings(),
        url=None,
        title=None,
        screenshot="s.png",
        screenshot_size=(1, 1),
        policy="script",
        raw_output=json.dumps(PASSWORD),
        reasoning=PASSWORD[:120],
        action={"action": "left_click", "coordinate": [5, 5]},
        confidence=None,
        outcome="error",
        error=f"typing {PASSWORD!r} failed",
        element=ElementInfo(tag="input", text=PASSWORD[:200], box=Box(x=0, y=0, width=1, height=1)),
    )
    written = writer.write_step(step)
    assert written.element is not None and written.element.text == MASK and written.error == f"typing '{MASK}' failed"
    writer.record.checks = [CheckResult(type="js", description="d", passed=True, detail=f"returned {PASSWORD!r}")]
    final = writer.finish(status=RunStatus.succeeded, end_reason=f"done with {PASSWORD}")
    assert final.end_reason == f"done with {MASK}" and final.checks[0].detail == f"returned '{MASK}'"
    assert read_steps(tmp_path / "r1")[0].element.text == MASK  # type: ignore[union-attr]
    assert read_run(tmp_path / "r1").task == {"goal": f"use {MASK}"}
    assert not [h for path in tmp_path.rglob("*") if path.is_file() for h in hits(path.read_bytes(), str(path))]


# -- end to end ---------------------------------------------------------------------------------------------


class SearchSite(NamedTuple):
    url: str


class _SearchPage(QuietHandler):
    """A search form whose field is a password input, submitted with GET: the value lands in the URL, the title
    and the page text, the way a careless site echoes what it was sent."""

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        parts = urlsplit(self.path)
        if parts.path == "/search":
            q = parse_qs(parts.query).get("q", [""])[0]
            body = (
                f"<title>Results for {html.escape(q)}</title><p id=r>Results for {html.escape(q)}</p>"
                f"<a href='/search?q={quote_plus(q)}'>again</a>"
            )
        else:
            body = (
                "<title>Search</title><form method=get action=/search><label for=q>Search</label> "
                "<input id=q name=q type=password style='width:600px'></form>"
            )
        self.reply(200, ("<!doctype html><meta charset=utf-8>" + body).encode(), "text/html; charset=utf-8")


@pytest.fixture
def search_site() -> Iterator[SearchSite]:
    with LocalServer(_SearchPage) as server:
        yield SearchSite(server.url)


def _cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    """``glassbox ARGS``: a run in a child process (whatever it or Chromium writes to the terminal counts);
    the commands that only read runs in this process (what they print is the same, in a fraction of the time)."""
    if args[0] == "run":
        proc = subprocess.run(
            [sys.executable, "-m", "cli", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env={**os.environ, "COLUMNS": "4000", **(env or {})},
        )
    else:
        proc = glassbox_in_process(*args, env={"COLUMNS": "4000", **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _publish_variant(tmp_path: Path) -> Path:
    """The bundled task with a long password from the environment, the agent clicking back into the filled
    password field, the password also typed as plain text (a non-secret input holding it) and checks that
    echo it back from the shop's API."""
    data = yaml.safe_load((TASKS / "publish_product.yaml").read_text(encoding="utf-8"))
    for spec in data["files"].values():  # a task uploads only from its own folder: bring the fixtures along
        (tmp_path / spec["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TASKS / spec["path"], tmp_path / spec["path"])
    data["inputs"]["password"] = {"env": "GLASSBOX_TEST_PASSWORD", "secret": True}
    data["inputs"]["description"] = PASSWORD  # typed as plain text: raw output and action carry it JSON-escaped
    script = data["script"]
    typed = next(i for i, s in enumerate(script) if s.get("text") == "{password}")
    script.insert(
        typed + 1, {"action": "left_click", "target": {"label": "Password"}, "note": "Check what the password field holds"}
    )
    data["checks"].append(
        {
            "type": "http_json",
            "url": "/api/products?name={product_name}",
            "path": "items",
            "match": {"description": "{password}"},
            "description": "the description is {password}",
        }
    )
    path = tmp_path / "publish_secret.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _search_task(tmp_path: Path, site: SearchSite) -> Path:
    data = {
        "name": "search-secret",
        "goal": "Search for {query}.",
        "inputs": {"query": {"value": QUERY, "secret": True}},
        "target": {"start_url": site.url + "/"},
        "script": [
            {"action": "left_click", "target": {"label": "Search"}},
            {"action": "type", "text": "{query}"},
            {"action": "left_click", "target": {"label": "Search"}, "note": "Look at what the field holds"},
            {"action": "key", "keys": ["enter"], "note": "Submit the search"},
            {"action": "left_click", "target": {"selector": "#r"}, "note": "Read the results heading"},
            {"action": "terminate", "status": "success"},
        ],
        "checks": [
            {"type": "url_matches", "pattern": r"/search\?q="},
            {"type": "text_present", "text": "{query}", "description": "the results show {query}"},
            {"type": "js", "expression": "document.body.innerHTML"},
            {"type": "js", "expression": "JSON.stringify(document.title)"},
            {"type": "js", "expression": "location.search + ' ' + encodeURIComponent(document.title)"},
        ],
        "limits": {"max_steps": 10},
    }
    path = tmp_path / "search_secret.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.usefixtures("chromium")
def test_no_secret_reaches_any_file_cli_output_viewer_response_or_export(tmp_path, search_site):
    from agent import load_task, run_task
    from replays.labels import Correction, LabelIn, Labels
    from replays.viewer import ViewerServer

    runs = tmp_path / "runs"
    env = {"GLASSBOX_TEST_PASSWORD": PASSWORD}
    outputs: dict[str, str] = {}
    # The bundled task as shipped, then the variant: both through the command line, whose output counts too.
    outputs["run bundled"] = _cli("run", str(TASKS / "publish_product.yaml"), "--runs-dir", str(runs))
    outputs["run variant"] = _cli("run", str(_publish_variant(tmp_path)), "--runs-dir", str(runs), env=env)
    search = run_task(load_task(_search_task(tmp_path, search_site)), runs_dir=runs)

    # There was something to leak: the fields held the secrets, the checks saw them, and all of it is masked.
    variant_dir = next(
        p
        for p in runs.iterdir()
        if p.is_dir() and "publish-product" in p.name and read_run(p).task["inputs"]["password"]["value"] is None
    )
    variant = read_run(variant_dir)
    assert variant.status is RunStatus.succeeded, variant.end_reason  # the shop took the 300-character password
    recheck = next(s for s in read_steps(variant_dir) if "Check what the password field holds" in (s.reasoning or ""))
    assert recheck.element is not None and (recheck.element.tag, recheck.element.text) == ("input", MASK)
    echoed = next(c for c in variant.checks if c.description == "the description is <secret>password</secret>")
    assert echoed.passed and f"'description': '{MASK}'" in echoed.detail
    typed = [s.action for s in read_steps(variant_dir) if s.action is not None and s.action.action == "type"]
    assert {"action": "type", "text": MASK} in [a.model_dump() for a in typed]
    assert search.status is RunStatus.succeeded, search.end_reason
    steps = read_steps(search.run_dir)
    assert steps[2].element is not None and steps[2].element.text == MASK
    assert steps[4].url == f"{search_site.url}/search?q={MASK}" and steps[4].title == f"Results for {MASK}"
    assert steps[4].element is not None and steps[4].element.text == f"Results for {MASK}"
    assert all(c.passed for c in search.checks) and MASK in search.checks[2].detail

    # Labels, so that the feedback exports have records of these steps.
    labels = Labels(runs)
    labels.add(variant.run_id, recheck.index, LabelIn(verdict="correct"))
    labels.add(search.run_id, 4, LabelIn(verdict="wrong", correction=Correction(action="left_click", coordinate=(500, 500))))
    labels.add(search.run_id, 2, LabelIn(verdict="correct"))

    run_ids = [variant.run_id, search.run_id] + [
        p.name for p in runs.iterdir() if p.is_dir() and p.name != variant.run_id and p.name != search.run_id
    ]
    outputs["runs list"] = _cli("runs", "list", "--runs-dir", str(runs))
    outputs["runs list --json"] = _cli("runs", "list", "--runs-dir", str(runs), "--json")
    for run_id in run_ids:
        outputs[f"runs show {run_id}"] = _cli("runs", "show", run_id, "--runs-dir", str(runs))
        outputs[f"runs show --json {run_id}"] = _cli("runs", "show", run_id, "--runs-dir", str(runs), "--json")
        for fmt in ("json", "graphml", "mermaid"):
            outputs[f"graph {fmt} {run_id}"] = _cli("graph", run_id, "--runs-dir", str(runs), "--format", fmt)

    exports = tmp_path / "exports"
    for fmt in ("sft", "dpo"):
        outputs[f"export {fmt}"] = _cli(
            "export", "feedback", "--format", fmt, "--out", str(exports / f"{fmt}.jsonl"), "--runs-dir", str(runs)
        )
    for run_id in (variant.run_id, search.run_id):
        outputs[f"export playwright {run_id}"] = _cli(
            "export", "playwright", run_id, "--out", str(exports / f"{run_id}.py"), "--runs-dir", str(runs)
        )
    assert (exports / "sft.jsonl").read_text(encoding="utf-8").count("\n") == 3  # corrections count too
    assert (exports / "dpo.jsonl").read_text(encoding="utf-8").count("\n") == 1

    viewer = ViewerServer(runs).start()
    try:
        with httpx.Client(base_url=viewer.url, timeout=30) as client:
            paths = ["/", "/api/runs", f"/diff?a={variant.run_id}&b={search.run_id}"]
            for run_id in run_ids:
                paths += [f"/runs/{run_id}", f"/api/runs/{run_id}", f"/api/runs/{run_id}/graph", f"/api/runs/{run_id}/events"]
            for path in paths:
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code, response.text[:300])
                outputs[f"GET {path}"] = response.text
    finally:
        viewer.stop()

    leaks = [h for name, text in outputs.items() for h in hits(text, name)]
    files = [p for root in (runs, exports) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "index.sqlite3" for p in files)
    leaks += [h for p in files for h in hits(p.read_bytes(), str(p.relative_to(tmp_path)))]
    assert leaks == []
