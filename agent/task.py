"""Task files: the YAML schema (pydantic) and a loader whose errors name file, field and line.

Usage::

    task = load_task(Path("tasks/publish_product.yaml"))
    task.goal_text()          # the goal as the model sees it (secrets as <secret>name</secret>)
    task.secret_values()      # {"password": "..."}: for the executor only

A task is data, never code. ``{name}`` in the goal, script texts and checks refers to an input.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from tools.actions import BROWSER_TOOLS, COMPUTER_USE_ACTIONS, POINT_ACTIONS, ActionError, ToolCall, parse_tool_call
from tools.browser import BrowserSettings, Target
from tools.coords import CoordinateMode

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SITES = ("shop",)


class TaskError(ValueError):
    """A task file that cannot be used. ``str()`` names the file, the field, the line and the problem."""

    def __init__(self, path: Path | None, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        where = str(path) if path else "task"
        super().__init__(f"{where}: " + ("\n  " + "\n  ".join(problems) if len(problems) > 1 else problems[0]))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Strict):
    """A value the task uses. ``secret: true`` keeps it out of prompts, records and the viewer."""

    value: str | None = None
    env: str | None = None  # read the value from this environment variable
    secret: bool = False
    description: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "InputSpec":
        if self.value is None and self.env is None:
            raise ValueError("an input needs a 'value' or an 'env' variable name")
        return self


class SiteTarget(_Strict):
    """A bundled site, started fresh for the run."""

    site: Literal["shop"]
    layout_seed: int = Field(default=0, ge=0)
    path: str = "/login"


class UrlTarget(_Strict):
    start_url: str

    @field_validator("start_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("start_url must be an http:// or https:// URL")
        return v


class XvfbSpec(_Strict):
    width: int = Field(default=1024, ge=64, le=8192)
    height: int = Field(default=768, ge=64, le=8192)


class DesktopSpec(_Strict):
    """The desktop app to run: ``{python}`` is this Python, ``{workdir}`` a fresh folder per run."""

    command: list[str] = Field(min_length=1)
    xvfb: XvfbSpec | bool = True  # a private Xvfb (true or its size); false: use `display` / $DISPLAY
    display: str | None = None
    monitor: int = Field(default=1, ge=1)
    window_title: str | None = None  # wait until a window with this title exists
    ready_timeout_s: float = Field(default=15, gt=0)


class FileSpec(_Strict):
    path: str
    description: str | None = None


class HttpJsonCheck(_Strict):
    """GET ``url`` (relative to the site) and look for ``match`` at ``path`` (dotted) in the JSON."""

    type: Literal["http_json"]
    url: str
    path: str = ""
    match: dict[str, Any]
    description: str | None = None


class UrlMatchCheck(_Strict):
    type: Literal["url_matches"]
    pattern: str
    description: str | None = None

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return v


class TextPresentCheck(_Strict):
    type: Literal["text_present"]
    text: str
    description: str | None = None


class JsCheck(_Strict):
    """A JavaScript expression evaluated in the page; passes when truthy."""

    type: Literal["js"]
    expression: str
    description: str | None = None


class FileJsonCheck(_Strict):
    """A JSON file the app wrote (``{workdir}`` is the run's working folder) holds ``match``."""

    type: Literal["file_json"]
    path: str
    path_in_json: str = ""
    match: dict[str, Any]
    description: str | None = None


class CommandCheck(_Strict):
    """A command exits with ``exit_code`` (argv, not a shell line)."""

    type: Literal["command"]
    argv: list[str] = Field(min_length=1)
    exit_code: int = 0
    description: str | None = None


class WindowTitleCheck(_Strict):
    """A window whose title contains ``text`` exists on the display (a simple check of what is on screen)."""

    type: Literal["window_title"]
    text: str
    description: str | None = None


Check = Annotated[
    Union[HttpJsonCheck, UrlMatchCheck, TextPresentCheck, JsCheck, FileJsonCheck, CommandCheck, WindowTitleCheck],
    Field(discriminator="type"),
]
BROWSER_CHECKS = ("http_json", "url_matches", "text_present", "js")
DESKTOP_CHECKS = ("file_json", "command", "window_title")


class Limits(_Strict):
    max_steps: int = Field(default=30, ge=1, le=1000)
    max_consecutive_errors: int = Field(default=3, ge=1)
    time_budget_s: float = Field(default=600, gt=0)


class PolicySettings(_Strict):
    """Which policy decides, and how. Sampling defaults depend on the model kind (see agent.policies)."""

    name: Literal["script", "qwen3vl", "openai"] = "script"
    model: str | None = None  # local folder or hub id (qwen3vl), served model name (openai)
    base_url: str | None = None  # OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the API key
    timeout_s: float = Field(default=120.0, gt=0)
    thinking: bool | None = None  # None: detect (chat template / model name)
    # Sampling: unset values take the Qwen3-VL defaults for Thinking or Instruct models.
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    presence_penalty: float | None = None
    max_new_tokens: int = Field(default=1024, ge=1)
    seed: int | None = None
    min_pixels: int | None = Field(default=None, ge=1)
    max_pixels: int | None = Field(default=None, ge=1)
    coordinate_mode: CoordinateMode = CoordinateMode.relative_1000
    coordinate_divisor: float = Field(default=1000.0, gt=0)
    history_screenshots: int = Field(default=1, ge=1, le=8)
    # Local backend: fast = static KV cache + compiled decode step + prompt prefix reuse; auto = fast on CUDA.
    decoding: Literal["auto", "fast", "plain"] = "auto"
    compile: bool | None = None  # compile the fast path's decode step; None: on CUDA only
    attention: bool = True  # capture attention maps (local backend)
    attention_layers: list[int] | None = None  # None: every layer, grouped into shallow / middle / deep thirds
    attention_heads: Literal["mean", "max"] = "mean"
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    on_low_confidence: Literal["continue", "stop"] = "continue"


class ScriptStep(_Strict):
    """A demonstration step: a computer_use (or browser) action, its coordinate given or found by target."""

    model_config = ConfigDict(extra="allow")

    action: str
    target: Target | None = None
    note: str | None = None

    def arguments(self) -> dict[str, Any]:
        """The action's arguments as written (everything but target and note)."""
        return {k: v for k, v in (self.model_extra or {}).items()}

    @model_validator(mode="after")
    def _check(self) -> "ScriptStep":
        names = (*COMPUTER_USE_ACTIONS, *BROWSER_TOOLS)
        if self.action not in names:
            raise ValueError(f"unknown action {self.action!r}; use one of: {', '.join(names)}")
        args = self.arguments()
        if self.target is not None:
            if self.action not in POINT_ACTIONS and self.action not in ("scroll", "hscroll"):
                raise ValueError(f"{self.action!r} takes no target")
            if "coordinate" in args:
                raise ValueError("give either 'target' or 'coordinate', not both")
            if not any(self.target.model_dump(exclude_none=True).values()):
                raise ValueError("target needs one of selector, text, label or role")
            args["coordinate"] = [0, 0]  # validated with a stand-in; resolved at run time
        name = self.action if self.action in BROWSER_TOOLS else "computer_use"
        if name == "computer_use":
            args["action"] = self.action
        try:
            parse_tool_call(ToolCall(name=name, arguments=args))
        except ActionError as exc:
            raise ValueError(str(exc)) from None
        return self


class Task(_Strict):
    """A task file."""

    name: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    environment: Literal["browser", "desktop"] = "browser"
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    target: SiteTarget | UrlTarget | None = None  # browser tasks
    desktop: DesktopSpec | None = None  # desktop tasks
    allowed_origins: list[str] = Field(default_factory=list)
    files: dict[str, FileSpec] = Field(default_factory=dict)
    checks: list[Check] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    browser: BrowserSettings = Field(default_factory=BrowserSettings)
    script: list[ScriptStep] | None = None

    # Set by the loader and the loop, not by the file.
    source: Path | None = Field(default=None, exclude=True)
    runtime: dict[str, str] = Field(default_factory=dict, exclude=True)  # {workdir}, {python} of a desktop run

    @field_validator("inputs", mode="before")
    @classmethod
    def _scalar_inputs(cls, v: Any) -> Any:
        # `product_name: Wireless headset` is shorthand for `{value: Wireless headset}`.
        if isinstance(v, dict):
            return {k: ({"value": str(x)} if isinstance(x, (str, int, float)) else x) for k, x in v.items()}
        return v

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> "Task":
        # parse_task() runs these itself so that it can point at the line of each problem.
        if not (info.context or {}).get("defer_cross_checks"):
            problems = self.cross_problems()
            if problems:
                loc, message = problems[0]
                raise ValueError(f"{_dotted(loc)}: {message}")
        return self

    def cross_problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """Problems between fields (placeholders, declared files, allowed origins), with their locations."""
        problems: list[tuple[tuple[Any, ...], str]] = []
        if self.environment == "browser" and self.target is None:
            problems.append(((), "a browser task needs a 'target' (site: shop, or start_url)"))
        if self.environment == "desktop":
            if self.desktop is None:
                problems.append(((), "a desktop task needs a 'desktop' section (command, xvfb or display)"))
            for i, step in enumerate(self.script or []):
                if step.target is not None:
                    problems.append((("script", i, "target"), "desktop scripts give coordinates: there is no element "
                                     "tree to find a target in"))
                if step.action in BROWSER_TOOLS:
                    problems.append((("script", i, "action"), f"{step.action} is a browser action"))
        allowed = DESKTOP_CHECKS if self.environment == "desktop" else BROWSER_CHECKS
        for i, check in enumerate(self.checks):
            if check.type not in allowed:
                problems.append((("checks", i, "type"), f"{check.type} checks do not apply to {self.environment} tasks "
                                 f"(use {', '.join(allowed)})"))
        names = set(self.inputs) | {"workdir", "python"}
        for loc, text in self._templated_texts():
            for ref in _PLACEHOLDER.findall(text):
                if ref not in names:
                    known = ", ".join(sorted(names)) or "none"
                    problems.append((loc, f"refers to {{{ref}}}, which is not an input (inputs: {known})"))
        for i, step in enumerate(self.script or []):
            args = step.arguments()
            if step.action == "upload_file" and args.get("file") not in self.files:
                declared = ", ".join(sorted(self.files)) or "none"
                problems.append((("script", i, "file"), f"{args.get('file')!r} is not a declared file (files: {declared})"))
            if step.action == "goto_url":
                url = str(args.get("url", ""))
                if _PLACEHOLDER.sub("x", url) == url and not self._url_allowed(url):
                    problems.append((("script", i, "url"), f"{url!r} is outside allowed_origins"))
        return problems

    def _templated_texts(self) -> list[tuple[tuple[Any, ...], str]]:
        texts: list[tuple[tuple[Any, ...], str]] = [(("goal",), self.goal)]
        for i, step in enumerate(self.script or []):
            for key, value in step.arguments().items():
                if isinstance(value, str):
                    texts.append((("script", i, key), value))
        for i, check in enumerate(self.checks):
            for key, value in check.model_dump().items():
                if isinstance(value, str):
                    texts.append((("checks", i, key), value))
                elif isinstance(value, dict):
                    texts.extend((("checks", i, key, k), x) for k, x in value.items() if isinstance(x, str))
                elif isinstance(value, list):
                    texts.extend((("checks", i, key, j), x) for j, x in enumerate(value) if isinstance(x, str))
        if self.desktop is not None:
            texts.extend((("desktop", "command", j), x) for j, x in enumerate(self.desktop.command))
        return texts

    def with_runtime(self, **values: str) -> "Task":
        """A copy whose ``{workdir}`` / ``{python}`` placeholders render to these values."""
        copy = self.model_copy(deep=True)
        copy.source = self.source
        copy.runtime = {**self.runtime, **values}
        return copy

    def _url_allowed(self, url: str) -> bool:
        from tools.browser import _origin

        allowed = {_origin(o) for o in self.allowed_origins}
        if isinstance(self.target, UrlTarget):
            allowed.add(_origin(self.target.start_url))
        return url.startswith("/") or _origin(url) in allowed

    # -- values -----------------------------------------------------------------------------------
    def input_values(self) -> dict[str, str]:
        """Every input's value, secrets included. For the executor and checks only."""
        return {name: self._value(name, spec) for name, spec in self.inputs.items()}

    def secret_values(self) -> dict[str, str]:
        values = self.input_values()
        return {name: values[name] for name, spec in self.inputs.items() if spec.secret}

    def render(self, text: str) -> str:
        """Fill ``{input}`` placeholders; secrets become ``<secret>name</secret>`` (the executor reveals them).

        Secret values are never read here, so a recorded task (secrets removed) renders the same prompt.
        """

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in self.runtime:
                return self.runtime[name]
            spec = self.inputs[name]
            if spec.secret:
                return f"<secret>{name}</secret>"
            return self._value(name, spec)

        return _PLACEHOLDER.sub(fill, text)

    def _value(self, name: str, spec: InputSpec) -> str:
        if spec.env is not None:
            value = os.environ.get(spec.env)
            if value is not None:
                return value
            if spec.value is None:
                raise TaskError(self.source, [f"inputs.{name}: environment variable {spec.env} is not set"])
        return str(spec.value)

    def render_secret(self, text: str) -> str:
        """Fill placeholders with real values, secrets included: for checks that never leave the machine."""
        values = {**self.input_values(), **self.runtime}
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

    def goal_text(self) -> str:
        return self.render(self.goal)

    def file_paths(self) -> dict[str, Path]:
        base = self.source.parent if self.source else Path.cwd()
        return {name: (base / spec.path).resolve() for name, spec in self.files.items()}

    def public_dict(self) -> dict[str, Any]:
        """The task as recorded: input values of secrets replaced, environment-sourced values left out."""
        data = self.model_dump(mode="json")
        for name, spec in self.inputs.items():
            if spec.secret:
                data["inputs"][name]["value"] = "<secret>" if spec.value is not None else None
        return data


def load_task(path: Path | str) -> Task:
    """Load and validate a task file; raises :class:`TaskError` naming file, field, line and problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskError(path, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(path, [f"cannot read the file: {exc}"]) from None
    return parse_task(text, source=path)


def parse_task(text: str, *, source: Path | None = None) -> Task:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        raise TaskError(source, [f"{line}not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    if not isinstance(data, dict):
        raise TaskError(source, ["line 1: a task file must be a mapping of fields (name, goal, target, ...)"])
    try:
        task = Task.model_validate(data, context={"defer_cross_checks": True})
    except ValidationError as exc:
        raise TaskError(source, [_problem(err, node) for err in exc.errors()]) from None
    task.source = source
    problems = [f"{_line(node, loc)}{_dotted(loc)}: {message}" for loc, message in task.cross_problems()]
    for name, file_path in task.file_paths().items():
        if not file_path.is_file():
            problems.append(f"{_line(node, ('files', name, 'path'))}files.{name}.path: no such file {file_path}")
    if problems:
        raise TaskError(source, problems)
    return task


def _dotted(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[") or "task"


def _problem(err: dict[str, Any], node: yaml.Node | None) -> str:
    loc = [p for p in err["loc"] if not _is_union_tag(p)]
    field = _dotted(loc)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        message = "required field is missing"
    elif err["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{_line(node, tuple(loc))}{field}: {message}"


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the union member name into the location ("SiteTarget", "http_json", "function-after[...]").
    return isinstance(part, str) and (part[:1].isupper() or "[" in part or part in {"http_json", "url_matches", "text_present", "js"})


def _line(node: yaml.Node | None, loc: tuple[Any, ...]) -> str:
    """``line N: `` for the deepest YAML node on ``loc`` (the field itself, or its parent when missing)."""
    found = node
    for depth, part in enumerate(loc):
        child = None
        if isinstance(found, yaml.MappingNode):
            last = depth == len(loc) - 1
            # The key's line for the field itself (its value may start on the next line).
            child = next(((k if last else v) for k, v in found.value if k.value == part), None)
        elif isinstance(found, yaml.SequenceNode) and isinstance(part, int) and part < len(found.value):
            child = found.value[part]
        if child is None:
            break
        found = child
    return f"line {found.start_mark.line + 1}: " if found is not None else ""
