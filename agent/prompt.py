"""The one prompt builder every backend uses: Qwen3-VL's computer-use prompt in the Nous function-calling format.

    prompt = build_prompt(task, history, current_png, settings=task.policy, past_screenshots={3: png3})
    prompt.messages      # chat messages; images as ImagePart (bytes in memory, path for the record)
    prompt.record()      # what goes into the step record: text, images by reference

System message = "You are a helpful assistant." + the ``# Tools`` block with ``computer_use`` (screen
described as 1000x1000, as in the official cookbook) and the browser extras the task allows. The user
turn carries the screenshot, the goal and a progress summary; with ``history_screenshots`` K > 1 the
last K-1 steps come back as real turns (their screenshot, the assistant output with the think block
stripped, the outcome in ``<tool_response>``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.task import PolicySettings, Task, TaskError
from tools.actions import Action, Answer, Key, Type, UploadFile
from tracer.schema import PromptMessage, RunRecord, StepErrorKind, StepRecord
from tracer.secrets import Scrubber

SYSTEM_TEXT = "You are a helpful assistant."
SCREEN = (1000, 1000)

FN_CALL_TEMPLATE = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tool_descs}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""

_THINK = re.compile(r"^.*</think>\s*", re.DOTALL)


class ImagePart(BaseModel):
    """An image in a message: the PNG bytes (for the model) and where the record keeps it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    type: Literal["image"] = "image"
    png: bytes = Field(repr=False, exclude=True)
    ref: str  # path relative to the run folder, or "current" before it is written


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: list[TextPart | ImagePart]

    def text(self) -> str:
        return "".join(p.text if isinstance(p, TextPart) else "<image>" for p in self.content)


class Prompt(BaseModel):
    messages: list[Message]
    tools: list[dict[str, Any]]

    def images(self) -> list[ImagePart]:
        return [p for m in self.messages for p in m.content if isinstance(p, ImagePart)]

    def record(self, current_ref: str) -> list[PromptMessage]:
        """The prompt as recorded: text with ``<image>`` markers, images by path."""
        out = []
        for m in self.messages:
            refs = [current_ref if p.ref == "current" else p.ref for p in m.content if isinstance(p, ImagePart)]
            out.append(PromptMessage(role=m.role, text=m.text(), images=refs))
        return out

    def hf_messages(self) -> list[dict[str, Any]]:
        """Messages for a Hugging Face chat template (images as placeholders, passed to the processor separately)."""
        return [
            {
                "role": m.role,
                "content": [
                    {"type": "text", "text": p.text} if isinstance(p, TextPart) else {"type": "image"} for p in m.content
                ],
            }
            for m in self.messages
        ]


@lru_cache(maxsize=1)
def _computer_use_spec() -> dict[str, Any]:
    data = json.loads(resources.files("agent").joinpath("computer_use.json").read_text(encoding="utf-8"))
    data.pop("_source", None)
    return data


def computer_use_function(width: int = SCREEN[0], height: int = SCREEN[1]) -> dict[str, Any]:
    """The cookbook's ``computer_use`` function, with the screen size filled in (1000x1000 for Qwen3-VL)."""
    spec = _computer_use_spec()
    return {
        "name": spec["name"],
        "description": spec["description"].format(display_width_px=width, display_height_px=height),
        "parameters": spec["parameters"],
    }


def offered_browser_tools(task: Task) -> tuple[str, ...]:
    """The browser functions this task's executor can perform, and so the only ones the model is offered.

    A desktop has no URL bar and no file chooser Glassbox can drive: it gets ``computer_use`` alone. A browser
    task gets ``upload_file`` when it declares files and ``goto_url`` always (limited to allowed origins).
    The loop validates tool calls against the same list, so a call to a tool that was not offered is an
    error step fed back to the model.
    """
    if task.environment != "browser":
        return ()
    return (("upload_file",) if task.files else ()) + ("goto_url",)


def browser_functions(task: Task) -> list[dict[str, Any]]:
    """The function specs of :func:`offered_browser_tools`."""
    offered = offered_browser_tools(task)
    functions = []
    if "upload_file" in offered:
        names = sorted(task.files)
        functions.append(
            {
                "name": "upload_file",
                "description": "Choose a file for the file input at the coordinate (a file chooser opens when you click "
                "it). The file is named, never given as a path. Files available: "
                + ", ".join(f"{n} ({task.files[n].description})" if task.files[n].description else n for n in names)
                + ".",
                "parameters": {
                    "properties": {
                        "file": {"description": "The name of the file to upload.", "type": "string", "enum": names},
                        "coordinate": {
                            "description": "(x, y): the file input or its 'Choose file' button, on the same grid "
                            "as computer_use.",
                            "type": "array",
                        },
                    },
                    "required": ["file", "coordinate"],
                    "type": "object",
                },
            }
        )
    if "goto_url" not in offered:
        return functions
    functions.append(
        {
            "name": "goto_url",
            "description": "Open a URL in the current browser tab. Only the task's own site can be opened.",
            "parameters": {
                "properties": {"url": {"description": "The absolute URL to open.", "type": "string"}},
                "required": ["url"],
                "type": "object",
            },
        }
    )
    return functions


def tools_for(task: Task) -> list[dict[str, Any]]:
    """Every function offered to the model for this task: ``computer_use`` plus what its executor kind allows."""
    return [computer_use_function(), *browser_functions(task)]


def system_text(tools: list[dict[str, Any]]) -> str:
    """Exactly what Qwen-Agent's NousFnCallPrompt appends to the system message."""
    descs = "\n".join(json.dumps({"type": "function", "function": f}, ensure_ascii=False) for f in tools)
    return SYSTEM_TEXT + "\n\n" + FN_CALL_TEMPLATE.format(tool_descs=descs)


def strip_think(text: str) -> str:
    """An assistant output without its reasoning (everything up to the last ``</think>``)."""
    return _THINK.sub("", text).strip()


def describe_step(step: StepRecord) -> str:
    """One line of the progress summary."""
    if step.outcome == "skipped" and step.gate is not None:  # a gate (a person) held the step back
        return f"{_describe_action(step.gate.model_action)} -> not performed: {_held_back(step)}"
    if step.error_kind is StepErrorKind.parse or step.action is None:
        what = "output could not be used"
    else:
        what = _describe_action(step.action)
    if step.gate is not None and step.gate.decision == "replace":
        what += f" (performed instead of your {_describe_action(step.gate.model_action)})"
    return what + (f" -> error: {step.error}" if step.error else "")


def _describe_action(action: Action | None) -> str:
    if action is None:  # a gate record always names the action it held back; an old record might not
        return "an action"
    name = action.action
    coordinate = getattr(action, "coordinate", None)  # point actions; a scroll may have one
    if coordinate is not None:
        what = f"{name} at ({coordinate[0]:.0f}, {coordinate[1]:.0f})"
    elif isinstance(action, (Type, Answer)):
        what = f"{name} {json.dumps(action.text, ensure_ascii=False)}"
    elif isinstance(action, Key):
        what = f"{name} {'+'.join(action.keys)}"
    else:
        extra = action.model_dump(mode="json", exclude={"action"}, exclude_none=True)
        what = f"{name} {json.dumps(extra, ensure_ascii=False)}" if extra else name
    if isinstance(action, UploadFile):
        what += f" ({action.file})"
    return what


def _held_back(step: StepRecord) -> str:
    gate = step.gate
    who = gate.who if gate is not None else "a gate"
    return f"{who} skipped it" + (f" ({gate.reason})" if gate is not None and gate.reason else "")


MAX_TOLD_TITLE = 300  # characters of a page title told to the model after an action


def tool_response(step: StepRecord, title_after: str | None = None) -> str:
    """What the model is told after ``step``; ``title_after``: the page's title once the action was done (the next
    screenshot's), not the one the step perceived before acting."""
    if step.error:
        verb = "could not be used" if step.error_kind in (StepErrorKind.parse, StepErrorKind.action) else "failed"
        told = _dialogs_told(step)
        return f"Your last output {verb} because: {step.error}.{told} Answer again with exactly one <tool_call>."
    if step.outcome == "skipped":
        return f"Your last action was not performed: {_held_back(step)}. Choose the next action."
    done = f"{step.action.action if step.action is not None else 'action'} done."
    # a page chooses its title: a megabyte of it would fill the model's context on every later step
    return done + _dialogs_told(step) + (f" Page: {title_after[:MAX_TOLD_TITLE]}" if title_after else "")


def _dialogs_told(step: StepRecord) -> str:
    """What the page did that a screenshot never shows: its dialogs and how they were answered, a tab the action
    opened or closed, the files it downloaded."""
    told = [f" A {d.kind} dialog said {d.message!r}; it was {d.answer}." for d in step.dialogs[:3]]
    count = len(step.dialogs) + step.dialogs_more
    more = f" ({count - 3} more dialogs.)" if count > 3 else ""
    tab = f" It {step.tab_change[:300]} (the screenshot shows that tab)." if step.tab_change else ""
    files = ", ".join(repr(name) for name in step.downloads[:5])
    downloaded = f" The page downloaded {files}." if files else ""
    return "".join(told) + more + tab + downloaded


def build_prompt(
    task: Task,
    history: list[StepRecord],
    current_png: bytes,
    *,
    settings: PolicySettings | None = None,
    past_screenshots: dict[int, bytes] | None = None,
    current_title: str | None = None,
) -> Prompt:
    """Build the prompt for the next step. ``past_screenshots`` maps step index -> PNG for the last K-1 steps;
    ``current_title``: the title of the page on ``current_png`` (the last action's result)."""
    settings = settings or task.policy
    tools = tools_for(task)
    k = max(1, settings.history_screenshots)
    past = past_screenshots or {}
    window = [s for s in history[-(k - 1) :] if s.index in past] if k > 1 else []
    older = history[: len(history) - len(window)]
    intro = _instruction(task, older)
    messages = [Message(role="system", content=[TextPart(text=system_text(tools))])]
    if not window:
        last = history[-1] if history else None
        told = last is not None and (last.error or last.outcome == "skipped" or last.dialogs or last.tab_change or last.downloads)
        text = intro + (("\n" + tool_response(history[-1], current_title)) if told else "")
        messages.append(Message(role="user", content=[ImagePart(png=current_png, ref="current"), TextPart(text=text)]))
        return _without_secrets(Prompt(messages=messages, tools=tools), task)
    first = window[0]
    messages.append(Message(role="user", content=[ImagePart(png=past[first.index], ref=first.screenshot), TextPart(text=intro)]))
    for i, step in enumerate(window):
        messages.append(Message(role="assistant", content=[TextPart(text=strip_think(step.raw_output or "") or "(no output)")]))
        nxt = window[i + 1] if i + 1 < len(window) else None
        image = ImagePart(png=past[nxt.index], ref=nxt.screenshot) if nxt else ImagePart(png=current_png, ref="current")
        response = tool_response(step, nxt.title if nxt else current_title)  # the title of the page it led to
        messages.append(
            Message(
                role="user",
                content=[
                    TextPart(text=f"<tool_response>\n{response}\n</tool_response>"),
                    image,
                ],
            )
        )
    return _without_secrets(Prompt(messages=messages, tools=tools), task)


def _without_secrets(prompt: Prompt, task: Task) -> Prompt:
    """The prompt with every secret masked in its text: a page's title is told to the model as the page wrote it,
    and a page may write a secret it was given into its title (the run folder masked it; the served model got it)."""
    try:
        scrubber = Scrubber.from_secrets(task.secret_values())
    except TaskError:  # an input read from an unset variable: the run reports it elsewhere
        return prompt
    if not scrubber:
        return prompt
    for message in prompt.messages:
        for part in message.content:
            if isinstance(part, TextPart):
                part.text = scrubber.scrub_text(part.text)
    return prompt


def rebuild_prompt(
    run: RunRecord, steps: dict[int, StepRecord], step: StepRecord, read_image: Callable[[str, int], bytes]
) -> Prompt:
    """The prompt a model would have been sent at ``step`` (steps of a script run carry none): built as the model
    policy builds it (:class:`agent.qwen_policy.QwenPolicy`), the task's policy settings and the screenshots of the
    last ``history_screenshots - 1`` steps included. ``read_image(ref, index)``: step ``index``'s screenshot."""
    task = Task.recorded(run.task, run_id=run.run_id)
    history = [steps[i] for i in sorted(steps) if i < step.index]
    past = {s.index: read_image(s.screenshot, s.index) for s in history}  # build_prompt keeps the last K-1
    return build_prompt(
        task,
        history,
        read_image(step.screenshot, step.index),
        settings=task.policy,
        past_screenshots=past,
        current_title=step.title,
    )


def _instruction(task: Task, older: list[StepRecord]) -> str:
    lines = [f"The user query: {task.goal_text()}"]
    if "<secret>" in lines[0]:
        lines.append(
            "Values written as <secret>name</secret> are secrets: type them exactly like that and they are filled in for you."
        )
    if older:
        done = "; ".join(f"Step {s.index + 1}: {describe_step(s)}" for s in older)
        lines.append(f"Task progress (You have done the following operation on the current device): {done}.")
    lines.append(
        "When the task is done, call computer_use with action=terminate and status=success (or failure if it cannot be done)."
    )
    return "\n".join(lines)
