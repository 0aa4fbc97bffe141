"""Runs to label, recorded in a fraction of a second on the fake executor (no Chromium): a script run, and a run
of the real Qwen3-VL policy (prompt builder, parser, recorder) over a backend that answers from a list."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from agent import load_task, run_task
from agent.backends.base import Backend, Generation
from agent.prompt import Prompt
from agent.qwen_policy import QwenPolicy
from tools.fake import FakeExecutor
from tracer.schema import RunStatus

SECRET_ENV = "GLASSBOX_TEST_LABEL_PW"
SECRET = "Zq-tulip-77-secret"  # what the task's password input reads from SECRET_ENV


def task_file(folder: Path, script: str, *, policy: str = "{history_screenshots: 2}") -> Path:
    path = folder / "label-task.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: label-task
        goal: Sign in as {{username}} and finish.
        inputs:
          username: ada
          password: {{env: {SECRET_ENV}}}
        target: {{start_url: "http://fake.invalid/login"}}
        limits: {{max_steps: 10}}
        policy: {policy}
        script:
        """)
        + textwrap.indent(textwrap.dedent(script), "  "),
        encoding="utf-8",
    )
    return path


SCRIPT = """\
    - {action: left_click, coordinate: [500, 500]}
    - {action: type, text: "{password}"}
    - {action: terminate, status: success}
    """


def script_run(folder: Path) -> Path:
    """A succeeded script run of three steps (click, type the password, terminate); its run folder."""
    task = load_task(task_file(folder, SCRIPT))
    result = run_task(task, policy="script", runs_dir=folder / "runs", executor=FakeExecutor(secrets=task.secret_values()))
    assert result.status is RunStatus.succeeded, result.end_reason
    return result.run_dir


class ListBackend(Backend):
    """A Thinking model's outputs, one per step, in order (the policy, parser and recorder around it are real)."""

    name = "local"
    model = "list-model"
    thinking = True

    def __init__(self, outputs: list[str]) -> None:
        self.outputs = list(outputs)
        self.prompts: list[Prompt] = []

    def generate(
        self, prompt: Prompt, sampling: object, *, step: int, attention: bool = False, deadline: float | None = None
    ) -> Generation:  # type: ignore[override]
        self.prompts.append(prompt)
        return Generation(text=self.outputs.pop(0), attention_reason="not captured")


def call(arguments: dict[str, object]) -> str:
    return "<tool_call>\n" + json.dumps({"name": "computer_use", "arguments": arguments}) + "\n</tool_call>"


MODEL_OUTPUTS = [
    "The Sign in button is in the middle.</think>\n\n" + call({"action": "left_click", "coordinate": [500, 500]}),
    "Now the username field.</think>\n\n" + call({"action": "left_click", "coordinate": [300, 200]}),
    "Done.</think>\n\n" + call({"action": "terminate", "status": "success"}),
]


def model_run(folder: Path) -> tuple[Path, ListBackend]:
    """A run of the Qwen3-VL policy over :class:`ListBackend` (history_screenshots 2: multi-image prompts)."""
    task = load_task(task_file(folder, SCRIPT))
    backend = ListBackend(MODEL_OUTPUTS)
    result = run_task(
        task,
        runs_dir=folder / "runs",
        executor=FakeExecutor(secrets=task.secret_values()),
        policy_factory=lambda t, _executor: QwenPolicy(backend, t),
    )
    assert result.status is RunStatus.succeeded, result.end_reason
    return result.run_dir, backend
