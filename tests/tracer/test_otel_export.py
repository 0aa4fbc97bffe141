"""Runs as OpenTelemetry traces, received by a real OTLP/HTTP receiver on 127.0.0.1 (decoded with the official
opentelemetry-proto messages): the bundled script run exported after the fact, a live ``glassbox run --otel``, a
served-model run with message content on (a secret typed into the page and named in the reasoning never leaves),
and a run whose collector is down."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.agent.test_openai_backend import FakeChatServer
from tests.conftest import ROOT, TASKS, copy_bundled_run, glassbox_in_process
from tests.tracer.otlp_receiver import OtlpHttpReceiver, ReceivedSpan, tree
from tracer.labels import LabelAdded, append_label_event, new_label_id
from tracer.store import read_run, read_steps

SECRET = "Xq7-tulip-4821"  # tasks/publish_product.yaml's password
TASK = str(TASKS / "publish_product.yaml")


def _ns(value: datetime) -> int:
    value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1_000_000_000)


def _one_trace(spans: list[ReceivedSpan]) -> tuple[ReceivedSpan, dict[str, list[ReceivedSpan]]]:
    assert spans, "the receiver got no spans"
    assert len({s.trace_id for s in spans}) == 1, "all spans of a run are one trace"
    [root] = [s for s in spans if not s.parent_id]
    return root, tree(spans)


def _assert_script_trace(spans: list[ReceivedSpan], run_dir: Path) -> dict[str, list[ReceivedSpan]]:
    run, steps = read_run(run_dir), read_steps(run_dir)
    root, children = _one_trace(spans)
    assert root.name == "invoke_agent glassbox" and root.kind == "internal"
    assert root.resource["service.name"] == "glassbox"
    attrs = root.attributes
    assert attrs["gen_ai.operation.name"] == "invoke_agent"
    assert attrs["gen_ai.agent.name"] == "glassbox"
    assert attrs["gen_ai.conversation.id"] == run.run_id
    assert "gen_ai.provider.name" not in attrs and "gen_ai.request.model" not in attrs  # a script has neither
    assert attrs["glassbox.run.status"] == "succeeded" and root.status == 1
    assert root.start_ns == _ns(run.started_at)
    checks = [e for e in root.events if e[0] == "gen_ai.evaluation.result"]
    assert [(e[1]["gen_ai.evaluation.name"], e[1]["gen_ai.evaluation.score.label"]) for e in checks] == [
        ("check.http_json", "pass"),
        ("check.text_present", "pass"),
    ]
    assert all(e[1]["gen_ai.evaluation.score.value"] == 1.0 for e in checks)

    step_spans = children[root.span_id]
    assert [s.name for s in step_spans] == ["glassbox.step"] * len(steps)
    assert [s.attributes["glassbox.step.index"] for s in step_spans] == [s.index for s in steps]
    for span, step in zip(step_spans, steps, strict=True):
        assert span.start_ns == _ns(step.started_at)  # the recorded times, not the export's
        kids = children.get(span.span_id, [])
        assert [k.name.split()[0] for k in kids] == ["execute_tool"], "a script step has a tool span and no chat span"
        [tool] = kids
        assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
        assert tool.attributes["gen_ai.tool.call.id"] == f"{run.run_id}/{step.index}/0"
        assert tool.attributes["glassbox.action"] == step.action.action  # type: ignore[union-attr]
        assert "gen_ai.tool.call.arguments" not in tool.attributes  # content is opt-in
        assert span.attributes["glassbox.screenshot"].endswith(step.screenshot)
    last_tool = children[step_spans[-1].span_id][0]
    assert last_tool.name == "execute_tool computer_use" and last_tool.attributes["glassbox.action"] == "terminate"
    return children


def test_export_otel_of_the_bundled_run(bundled_run, tmp_path):
    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    append_label_event(
        result.run_dir,
        LabelAdded(id=new_label_id(), step=4, verdict="wrong", note="the wrong field", created_at=datetime.now(timezone.utc)),
    )
    with OtlpHttpReceiver() as receiver:
        done = glassbox_in_process("export", "otel", result.run_id, "--runs-dir", str(tmp_path / "runs"), env=receiver.env)
        assert done.returncode == 0, done.stderr
        assert "sent 1 run(s)" in done.stdout
        spans = receiver.spans()
        raw = receiver.raw()
    assert set(receiver.paths) == {"/v1/traces"}
    assert {k.lower(): v for k, v in receiver.headers[0].items()}["content-type"] == "application/x-protobuf"
    children = _assert_script_trace(spans, result.run_dir)
    [root] = children[""]
    step4 = children[root.span_id][4]
    labels = [e[1] for e in step4.events if e[1].get("gen_ai.evaluation.name") == "glassbox.label"]
    assert labels == [
        {
            "gen_ai.evaluation.name": "glassbox.label",
            "gen_ai.evaluation.score.value": 0.0,
            "gen_ai.evaluation.score.label": "wrong",
            "gen_ai.evaluation.explanation": "the wrong field",
        }
    ]
    assert SECRET.encode() not in raw


def test_live_run_with_otel(chromium, tmp_path):
    with OtlpHttpReceiver() as receiver:
        done = glassbox_in_process("run", TASK, "--runs-dir", str(tmp_path / "runs"), "--otel", env=receiver.env)
        assert done.returncode == 0, done.stdout + done.stderr
        spans = receiver.spans()
        raw = receiver.raw()
    [run_dir] = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    _assert_script_trace(spans, run_dir)
    assert "warning" not in done.stderr
    assert SECRET.encode() not in raw


def _served_answers(server: FakeChatServer) -> None:
    """Three steps: click the username field, type the secret into it (by its placeholder: it then shows on the
    page in plain text, in the screenshots and to OCR), give up; the reasoning names the secret in plain text each
    time (the recorder masks it; so must the export)."""
    calls = [
        {"action": "left_click", "coordinate": [500, 420]},  # the login page's Username label
        {"action": "type", "text": "<secret>password</secret>"},
        {"action": "terminate", "status": "failure"},
    ]
    for i, call in enumerate(calls):
        text = "<tool_call>\n" + json.dumps({"name": "computer_use", "arguments": call}) + "\n</tool_call>"
        message = {"role": "assistant", "content": text, "reasoning_content": f"Step {i}: the password is {SECRET}."}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        usage = {
            "prompt_tokens": 1200 + i,
            "completion_tokens": 40 + i,
            "completion_tokens_details": {"reasoning_tokens": 30 + i},
        }
        server.responses.append((200, {"choices": [choice], "usage": usage}, {}))


def test_served_model_run_with_content(chromium, tmp_path):
    server = FakeChatServer()
    _served_answers(server)
    args = ("run", TASK, "--policy", "openai", "--base-url", server.url, "--model", "served-test", "--otel")
    try:
        with OtlpHttpReceiver() as receiver:
            env = {
                **receiver.env,
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
                "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
            }
            done = glassbox_in_process(*args, "--runs-dir", str(tmp_path / "runs"), env=env)
            spans = receiver.spans()
            raw = receiver.raw()
    finally:
        server.close()
    assert done.returncode == 1, done.stdout + done.stderr  # the agent gave up: a failed run, exported all the same
    assert len(server.requests) == 3
    assert SECRET.encode() not in raw, "a secret reached the collector"
    root, children = _one_trace(spans)
    assert root.attributes["gen_ai.provider.name"] == "openai"
    assert "gen_ai.system" not in root.attributes  # the latest names only
    assert root.attributes["gen_ai.request.model"] == "served-test"
    assert root.attributes["server.address"] == "127.0.0.1"
    assert root.attributes["glassbox.run.status"] == "failed" and root.status == 2
    step_spans = children[root.span_id]
    assert len(step_spans) == 3
    for i, step in enumerate(step_spans):
        kids = children[step.span_id]
        assert [k.name for k in kids] == ["chat served-test", "execute_tool computer_use"]
        chat, tool = kids
        assert chat.kind == "client"
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.provider.name"] == "openai"
        assert chat.attributes["gen_ai.usage.input_tokens"] == 1200 + i
        assert chat.attributes["gen_ai.usage.output_tokens"] == 40 + i
        assert chat.attributes["gen_ai.usage.reasoning.output_tokens"] == 30 + i
        assert chat.attributes["gen_ai.response.finish_reasons"] == ["stop"]
        output = json.loads(chat.attributes["gen_ai.output.messages"])
        reasoning = [p for p in output[0]["parts"] if p["type"] == "reasoning"][0]["content"]
        assert reasoning.startswith(f"Step {i}: the password is ") and SECRET not in reasoning
        inputs = json.loads(chat.attributes["gen_ai.input.messages"])
        images = [p for m in inputs for p in m["parts"] if p["type"] == "uri"]
        assert images and all(p["uri"].endswith(".png") and "base64" not in p["uri"] for p in images)
        assert "gen_ai.system_instructions" in chat.attributes
        assert tool.attributes["gen_ai.tool.name"] == "computer_use"
        assert json.loads(tool.attributes["gen_ai.tool.call.arguments"])["action"] in ("left_click", "type", "terminate")
    typed = json.loads(children[step_spans[1].span_id][1].attributes["gen_ai.tool.call.arguments"])
    assert typed["text"] == "<secret>password</secret>"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_collector_down_warns_once_and_the_run_goes_on(chromium, tmp_path):
    server = FakeChatServer()
    _served_answers(server)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}  # set: export is on without --otel
    try:
        args = ("run", TASK, "--policy", "openai", "--base-url", server.url, "--model", "served-test")
        done = glassbox_in_process(*args, "--runs-dir", str(tmp_path / "runs"), env=env)
    finally:
        server.close()
    assert done.returncode == 1 and "the agent ended the task" in done.stdout, done.stdout + done.stderr
    assert len(server.requests) == 3  # every step ran
    warnings = [line for line in done.stderr.splitlines() if "OpenTelemetry export" in line]
    assert len(warnings) == 1, done.stderr
    assert warnings[0].startswith("warning: OpenTelemetry export to http://127.0.0.1:") and "failed" in warnings[0]
    assert "Traceback" not in done.stderr and "Failed to export" not in done.stderr


@pytest.mark.parametrize("opt_in", ["", "gen_ai_latest_experimental"])
def test_export_of_a_dead_collector_fails_the_export_command(bundled_run, tmp_path, opt_in):
    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "OTEL_SEMCONV_STABILITY_OPT_IN": opt_in}
    done = glassbox_in_process("export", "otel", result.run_id, "--runs-dir", str(tmp_path / "runs"), env=env)
    assert done.returncode == 1
    said = " ".join(done.stderr.split())
    assert said.count("did not take the spans") == 1 and "http://127.0.0.1:" in said
    assert "goes on" not in said  # no run goes on: the command's error is the one thing said


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_an_evals_runs_sit_under_one_workflow_span(chromium, tmp_path, engine):
    """Two episodes in two worker processes (local) or Ray tasks (a local Ray): the trace context goes to the
    workers with each job."""
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            print(f"SKIP reason: Ray is not installed ({exc}); pip install 'glassbox[eval]'")
            pytest.skip(f"Ray is not installed: {exc}")
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"name: shop\ntasks: [{TASK}]\nseeds: [1, 2]\npolicy: {{name: script}}\nlimits: {{timeout_s: 300}}\n", encoding="utf-8"
    )
    args = [str(suite), "--engine", engine, "--workers", "2", "--runs-dir", str(tmp_path / "runs"), "--otel"]
    with OtlpHttpReceiver() as receiver:
        done = subprocess.run(
            [sys.executable, "-m", "cli", "eval", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, **receiver.env},
        )
        assert done.returncode == 0, done.stderr
        spans = receiver.spans()
    assert len({s.trace_id for s in spans}) == 1
    [workflow] = [s for s in spans if not s.parent_id]
    assert workflow.name == "invoke_workflow shop"
    assert workflow.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert workflow.attributes["gen_ai.workflow.name"] == "shop"
    runs = tree(spans)[workflow.span_id]
    assert [r.name for r in runs] == ["invoke_agent glassbox"] * 2
    assert {r.attributes["glassbox.eval.id"] for r in runs} == {workflow.attributes["glassbox.eval.id"]}
    assert all(r.attributes["glassbox.run.status"] == "succeeded" for r in runs)
    assert sum(1 for s in spans if s.name == "glassbox.step") >= 42


def test_episodes_on_ray_export_with_the_evals_settings_not_their_nodes(chromium, tmp_path, monkeypatch):
    """A Ray worker has the environment its node was started with, not the eval command's. Here the local Ray
    starts before the endpoint is set (as a cluster's nodes would), and the episode's run still reaches the
    receiver under the eval's workflow span."""
    try:
        import ray
    except ImportError as exc:
        print(f"SKIP reason: Ray is not installed ({exc}); pip install 'glassbox[eval]'")
        pytest.skip(f"Ray is not installed: {exc}")
    from evals.episode import Episode, EpisodeJob
    from evals.runner import run_eval
    from evals.suite import load_suite

    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: shop\ntasks: [{TASK}]\nseeds: [3]\npolicy: {{name: script}}\n", encoding="utf-8")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        with OtlpHttpReceiver() as receiver:
            for name, value in {**receiver.env, "OTEL_SERVICE_NAME": "shop-eval"}.items():
                monkeypatch.setenv(name, value)
            outcome = run_eval(load_suite(suite), runs_dir=tmp_path / "runs", engine="ray", otel=True)
            spans = receiver.spans()
    finally:
        ray.shutdown()
    assert outcome.summary.success.rate == 1.0
    [workflow] = [s for s in spans if not s.parent_id]
    [run] = [s for s in spans if s.name == "invoke_agent glassbox"]
    assert run.parent_id == workflow.span_id and run.resource["service.name"] == "shop-eval"
    assert sum(1 for s in spans if s.name == "glassbox.step") >= 21
    # The variables travel with the job (the headers may hold a key), but never show in its repr.
    episode = Episode(id="t/1", task_file=tmp_path / "t.yaml", task_name="t", seed=1, layout_seed=1, repeat=1)
    job = EpisodeJob(
        eval_id="e",
        episode=episode,
        attempt=1,
        run_id="r",
        runs_dir=tmp_path,
        timeout_s=1,
        otel_env={"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cret"},
    )
    assert "s3cret" not in repr(job) and "s3cret" not in str(job)


def test_a_replay_with_otel_reports_each_steps_replay(bundled_run, tmp_path):
    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    with OtlpHttpReceiver() as receiver:
        done = glassbox_in_process("replay", result.run_id, "--runs-dir", str(tmp_path / "runs"), "--otel", env=receiver.env)
        assert done.returncode == 0, done.stdout + done.stderr
        spans = receiver.spans()
        raw = receiver.raw()
    root, children = _one_trace(spans)
    assert root.attributes["glassbox.parent_run"] == result.run_id
    assert root.attributes["gen_ai.conversation.id"] != result.run_id  # the replay is a run of its own
    steps = children[root.span_id]
    assert len(steps) >= 21
    decisions = [s.attributes["glassbox.replay.decision"] for s in steps]
    assert decisions.count("replayed") >= 20 and set(decisions) <= {"replayed", "diverged", "fallback"}
    replayed = [s for s in steps if s.attributes["glassbox.replay.decision"] == "replayed"]
    assert all(s.attributes["glassbox.replay.source_run"] == result.run_id for s in replayed)
    assert all(isinstance(s.attributes["glassbox.replay.screen_diff"], float) for s in replayed)
    assert all([k.name.split()[0] for k in children[s.span_id]] == ["execute_tool"] for s in replayed)
    assert SECRET.encode() not in raw


def test_a_huge_recorded_text_is_cut_so_the_collector_still_takes_the_run(bundled_run, tmp_path):
    # A run folder is untrusted: one step's typed text of 3 MB (with content capture on) would otherwise make a
    # request a collector refuses, and the run's other spans would go with it.
    from tracer.otel_sdk import MAX_ATTRIBUTE_CHARS

    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    lines = (result.run_dir / "steps.jsonl").read_text(encoding="utf-8").splitlines()
    step = json.loads(lines[1])  # step 1 types the user name
    huge = "a" * 3_000_000
    step["tool_calls"][0]["arguments"]["text"] = huge
    lines[1] = json.dumps(step)
    (result.run_dir / "steps.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true", "OTEL_SEMCONV_STABILITY_OPT_IN": ""}
    with OtlpHttpReceiver() as receiver:
        done = glassbox_in_process(
            "export", "otel", result.run_id, "--runs-dir", str(tmp_path / "runs"), env={**receiver.env, **env}
        )
        assert done.returncode == 0, done.stderr
        spans = receiver.spans()
    root, children = _one_trace(spans)
    assert len(children[root.span_id]) == len(lines)  # every step arrived
    [tool] = children[children[root.span_id][1].span_id]
    arguments = tool.attributes["gen_ai.tool.call.arguments"]
    assert len(arguments) == MAX_ATTRIBUTE_CHARS and arguments.startswith('{"action": "type", "text": "aaa')


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"}, "is not an http:// or https:// URL; e.g. http://localhost:4318"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector:21"}, "is not an http:// or https:// URL"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:notaport"}, "is not a URL (its port must be a number)"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "/v1/traces"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT '/v1/traces'"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "x-ok=1,api-key: sk-live-SECRET123"}, "entry 2 is not name=value"),
        ({"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=sk-live-SECRET123\x07"}, "entry 1 is not name=value"),
    ],
)
def test_otlp_settings_that_cannot_work_are_a_usage_error_naming_the_variable(bundled_run, tmp_path, env, message):
    result = copy_bundled_run(bundled_run, tmp_path / "runs")
    done = glassbox_in_process("export", "otel", result.run_id, "--runs-dir", str(tmp_path / "runs"), env=env)
    said = " ".join(done.stderr.split())
    assert done.returncode == 2 and message in said, done.stderr
    assert "SECRET123" not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_otlp_settings_that_work_pass_the_check() -> None:
    from tracer.otel_sdk import check_settings, endpoint_for_humans

    for env in (
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1]:4318", "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer abc, x-a = b"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://user:pw@otel.example/v1/traces"},
    ):
        check_settings(env)
    assert endpoint_for_humans({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1]:4318"}) == "http://[::1]:4318"
    assert endpoint_for_humans({}) == "http://localhost:4318"  # the default, said as it would be set (it passes)
    check_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint_for_humans({})})
