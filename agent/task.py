"""Task files: the YAML schema (pydantic) and a loader whose errors name file, field and line.

Usage::

    task = load_task(Path("tasks/publish_product.yaml"))
    task.goal_text()          # the goal as the model sees it (secrets as <secret>name</secret>)
    task.secret_values()      # {"password": "..."}: for the executor only

A task is data, never code. ``{name}`` in the goal, script texts and checks refers to an input.
Task files are untrusted input: :func:`load_task` reads them through :mod:`agent.task_yaml` (bounded,
non-blocking, no alias bombs or duplicate keys), keeps uploads inside the task's folder (or a root the user
names), and refuses a task from outside the bundled ``tasks/`` folder that starts a program unless the user
allows programs.
"""

from __future__ import annotations

import ipaddress
import os
import re
import site
import stat
import sys
import sysconfig
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import quote, unquote, urljoin, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.task_yaml import YamlProblem, dotted, inputs_as_written, line_prefix, load_yaml, read_task_text
from tools.actions import BROWSER_TOOLS, COMPUTER_USE_ACTIONS, POINT_ACTIONS, ActionError, ToolCall, parse_tool_call
from tools.coords import CoordinateMode
from tools.errors import UsageError
from tools.views import BrowserSettings, SettlePolicy, Target

# ``{name}``: an input, {seed}, a value setup saved. ``{{`` and ``}}`` write a brace itself (as in Python's format
# strings): a js check's `({{a}}) => a`, a text to type with "{name}" in it.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BRACES = {"{{": "{", "}}": "}"}
# Values Glassbox fills in itself: the run's working folder and this Python (desktop tasks), the episode's seed.
RESERVED_VALUES = ("workdir", "python", "seed")
SITES = ("shop",)
BUNDLED_TASKS = Path(__file__).resolve().parent.parent / "tasks"
PROGRAMS_FLAG = "--allow-programs"
FILES_ROOT_FLAG = "--files-root"
_SITE_STAND_IN = "http://bundled-site.invalid/"  # a bundled site's origin is known only at run time
DEFAULT_SETUP_TIMEOUT_MS = 10_000
MAX_SETUP_TIMEOUT_MS = 120_000
MAX_SETUP_STEPS = 200
FILE_URL_HINT = "write file:///absolute/path.html, or file:path/relative/to/the/task/file.html"


def http_origin(value: str) -> str:
    """``scheme://host[:port]`` of an http(s) origin, lower-cased; raises ValueError for anything else."""
    if any(ord(c) < 33 or c == "\x7f" for c in value):
        raise ValueError("an origin may not contain spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) origin; write scheme://host[:port], e.g. https://example.com")
    if "@" in parts.netloc:
        raise ValueError(f"{value!r} holds a user name or password; an origin is scheme://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError(f"{value!r} has a path, query or fragment; an origin is scheme://host[:port]")
    _check_host_port(value, parts)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _check_host_port(value: str, parts: Any) -> None:
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port (1-65535)") from None
    if not parts.hostname or port == 0:
        raise ValueError(f"{value!r} has no host" if not parts.hostname else f"{value!r} has an invalid port (1-65535)")


Origin = Annotated[str, AfterValidator(http_origin)]


def url_origin(url: str) -> str:
    """The origin of an absolute http(s) URL (as :func:`http_origin` writes it); ValueError for other URLs."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL")
    return f"{parts.scheme}://{parts.netloc}".lower()


# A task or suite file is untrusted: it names environment variables only under this prefix (it must not pick
# which of the user's variables it reads: an AWS key typed into its own page), and a model server off this machine
# (which gets every screenshot and the API key) only when the user lists its origin in MODEL_ORIGINS_ENV.
ENV_PREFIX = "GLASSBOX_"
MODEL_ORIGINS_ENV = "GLASSBOX_MODEL_ORIGINS"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def file_env_name(name: str, *, also: tuple[str, ...] = ()) -> str:
    """``name`` when a task file may read that environment variable; ValueError saying why not."""
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(f"{name[:80]!r} is not an environment variable name")
    if not name.startswith(ENV_PREFIX) and name not in also:
        allowed = " or ".join([f"{ENV_PREFIX}..."] + list(also))
        raise ValueError(
            f"a task file may read only environment variables named {allowed}, not {name} (the file is untrusted: "
            f"it must not choose which of your variables it reads); export {ENV_PREFIX}{name}=... and name that"
        )
    return name


def trusted_model_server(url: str) -> str:
    """``url`` when a task or suite file may send screenshots (and the API key) there: a server on this machine,
    or one whose origin the user lists in $GLASSBOX_MODEL_ORIGINS; ValueError saying what to do otherwise."""
    origin = url_origin(url)
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return url
    try:
        if ipaddress.ip_address(host).is_loopback:
            return url
    except ValueError:
        pass  # a name, not an address
    listed = {o.strip().rstrip("/").lower() for o in os.environ.get(MODEL_ORIGINS_ENV, "").split(",") if o.strip()}
    if origin in listed:
        return url
    raise ValueError(
        f"{url[:200]!r} is not on this machine, and a task or suite file may send screenshots and your API key "
        f"only to a server you trust: export {MODEL_ORIGINS_ENV}={origin} (comma-separated origins), "
        "or give the server with --base-url"
    )


class TaskError(UsageError, ValueError):
    """A task file that cannot be used. ``str()`` names the file, the field, the line and the problem."""

    def __init__(self, path: Path | None, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        where = str(path) if path else "task"
        super().__init__(f"{where}: " + ("\n  " + "\n  ".join(problems) if len(problems) > 1 else problems[0]))


class RecordedTaskError(UsageError, ValueError):
    """A run's recorded task (its ``run.json``) that is not a valid task: a run folder is untrusted."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class InputSpec(_Strict):
    """A value the task uses. ``secret: true`` keeps it out of prompts, records and the viewer."""

    value: str | None = None
    env: str | None = None  # read the value from this environment variable
    secret: bool = False  # an `env` input is secret unless it says `secret: false`
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _env_is_secret_by_default(cls, data: Any) -> Any:
        # The environment holds API keys: a task naming a variable must not pull it into prompts and records
        # unless it says so explicitly.
        if isinstance(data, dict) and data.get("env") is not None and "secret" not in data:
            return {**data, "secret": True}
        return data

    @field_validator("env")
    @classmethod
    def _prefixed(cls, v: str | None) -> str | None:
        return None if v is None else file_env_name(v)

    @model_validator(mode="after")
    def _one_source(self) -> "InputSpec":
        if self.value is None and self.env is None:
            raise ValueError("an input needs a 'value' or an 'env' variable name")
        return self


class SiteTarget(_Strict):
    """A bundled site, started fresh for the run."""

    site: Literal["shop"]
    layout_seed: int = Field(default=0, ge=0, le=2**31 - 1)
    path: str = Field(default="/login", max_length=2048)

    @field_validator("path")
    @classmethod
    def _site_path(cls, v: str) -> str:
        # Appended to the site's base URL: "@evil.example/" or "//evil.example" would leave the site.
        if not v.startswith("/") or v.startswith("//") or any(ord(c) < 33 or c in "\\\x7f" for c in v):
            raise ValueError("path must be a path on the site starting with a single '/', e.g. /login")
        return v


class UrlTarget(_Strict):
    """A page to start on: an http(s) URL, or a ``file:`` page under the task's folder or its ``allowed_roots``."""

    start_url: str = Field(max_length=8192)

    @field_validator("start_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if v[:5].lower() == "file:":
            file_url_syntax(v)
            return v
        if not re.match(r"^https?://[^/\s]+", v, re.IGNORECASE) or any(ord(c) < 33 or c == "\x7f" for c in v):
            raise ValueError(
                "start_url must be an http:// or https:// URL, or a file: URL of a page under the task's folder "
                "(no spaces or control characters)"
            )
        parts = urlsplit(v)
        if "@" in parts.netloc:
            raise ValueError("start_url may not hold a user name or password")
        _check_host_port(v, parts)
        return v


class XvfbSpec(_Strict):
    width: int = Field(default=1024, ge=64, le=8192)
    height: int = Field(default=768, ge=64, le=8192)


class DesktopSpec(_Strict):
    """The desktop app to run: ``{python}`` is this Python, ``{workdir}`` a fresh folder per run."""

    command: list[str] = Field(min_length=1, max_length=256)
    xvfb: XvfbSpec | bool = True  # a private Xvfb (true or its size); false: use `display` / $DISPLAY
    display: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.\-]*:[0-9]{1,5}(\.[0-9]{1,2})?$")
    monitor: int = Field(default=1, ge=1, le=16)
    window_title: str | None = None  # wait until a window with this title exists
    ready_timeout_s: float = Field(default=15, gt=0, le=600)


class FileSpec(_Strict):
    path: str
    description: str | None = None


def file_url_syntax(url: str) -> str:
    """The path of a ``file:`` URL as written (percent-decoded; relative paths stay relative); ValueError if
    it is not one Glassbox opens: no host, no control characters, a path."""
    if any(ord(c) < 33 or c == "\x7f" for c in url):
        raise ValueError(f"{url[:200]!r}: a file: URL may not hold spaces or control characters (write %20); {FILE_URL_HINT}")
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        raise ValueError(f"{url[:200]!r} is not a file: URL")
    if parts.netloc:
        raise ValueError(f"{url[:200]!r} names a host ({parts.netloc!r}); a file: URL has none: {FILE_URL_HINT}")
    path = unquote(parts.path)
    if not path or "\x00" in path:
        raise ValueError(f"{url[:200]!r} has no file path; {FILE_URL_HINT}")
    return path


class WaitFor(_Strict):
    """Wait until a JavaScript expression is truthy, or until an element matching a CSS selector is in ``state``."""

    js: str | None = Field(default=None, min_length=1, max_length=100_000)
    selector: str | None = Field(default=None, min_length=1, max_length=10_000)
    state: Literal["visible", "attached", "hidden", "detached"] = "visible"

    @model_validator(mode="after")
    def _one(self) -> "WaitFor":
        if (self.js is None) == (self.selector is None):
            raise ValueError("wait_for takes one of 'js' (an expression) or 'selector' (CSS)")
        if self.js is not None and "state" in self.model_fields_set:
            raise ValueError("'state' applies to a selector wait, not a js one")
        return self


class SetupStep(_Strict):
    """One step of a task's ``setup``, run in the page before step 0: ``js``, ``wait_for`` or ``goto``.

    Values are literal (no ``{input}`` placeholders: JavaScript is full of braces). ``timeout_ms`` limits the
    step (default DEFAULT_SETUP_TIMEOUT_MS, at most MAX_SETUP_TIMEOUT_MS).
    """

    js: str | None = Field(default=None, min_length=1, max_length=100_000)
    wait_for: WaitFor | None = None
    goto: str | None = Field(default=None, min_length=1, max_length=8192)
    timeout_ms: int | None = Field(default=None, ge=1, le=MAX_SETUP_TIMEOUT_MS)
    description: str | None = Field(default=None, max_length=1000)
    # Keep what a js step returned (or a js wait saw) as ``{name}`` for the goal, script and checks: a benchmark's
    # instruction is often generated by its page (MiniWoB++'s utterance), not known when the file is written.
    save_as: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            shown = type(data).__name__ if not isinstance(data, str) else f"the text {data[:60]!r}"
            raise ValueError(f"a setup step is a mapping with one of js, wait_for or goto (got {shown})")
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> "SetupStep":
        kinds = [k for k in ("js", "wait_for", "goto") if getattr(self, k) is not None]
        if len(kinds) != 1:
            what = "none" if not kinds else " and ".join(kinds)
            raise ValueError(f"a setup step does one thing: js, wait_for or goto (this one has {what})")
        if self.goto is not None and any(ord(c) < 33 or c == "\x7f" for c in self.goto):
            raise ValueError("goto: a URL may not hold spaces or control characters")
        if self.save_as is not None and self.js is None and (self.wait_for is None or self.wait_for.js is None):
            raise ValueError("save_as keeps a value a script returned: give it with js or wait_for: {js: ...}")
        return self

    @property
    def kind(self) -> Literal["js", "wait_for", "goto"]:
        return "js" if self.js is not None else "wait_for" if self.wait_for is not None else "goto"

    @property
    def limit_ms(self) -> int:
        return self.timeout_ms if self.timeout_ms is not None else DEFAULT_SETUP_TIMEOUT_MS


class HttpJsonCheck(_Strict):
    """GET ``url`` (relative to the site) and look for ``match`` at ``path`` (dotted) in the JSON."""

    type: Literal["http_json"]
    url: str = Field(max_length=8192)
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
    max_consecutive_errors: int = Field(default=3, ge=1, le=1000)
    time_budget_s: float = Field(default=600, gt=0, le=86400)


class PolicySettings(_Strict):
    """Which policy decides, and how. Sampling defaults depend on the model kind (see agent.policies)."""

    name: Literal["script", "qwen3vl", "openai"] = "script"
    model: str | None = None  # local folder or hub id (qwen3vl), served model name (openai)
    base_url: str | None = None  # OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the API key
    timeout_s: float = Field(default=120.0, gt=0, le=3600)
    thinking: bool | None = None  # None: detect (chat template / model name)
    # Sampling: unset values take the Qwen3-VL defaults for Thinking or Instruct models.
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=1_000_000)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    max_new_tokens: int = Field(default=1024, ge=1, le=131072)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    min_pixels: int | None = Field(default=None, ge=1, le=100_000_000)
    max_pixels: int | None = Field(default=None, ge=1, le=100_000_000)
    coordinate_mode: CoordinateMode = CoordinateMode.relative_1000
    coordinate_divisor: float = Field(default=1000.0, gt=0, le=100_000)
    history_screenshots: int = Field(default=1, ge=1, le=8)
    # Local backend: fast = static KV cache + compiled decode step + prompt prefix reuse; auto = fast on CUDA.
    decoding: Literal["auto", "fast", "plain"] = "auto"
    compile: bool | None = None  # compile the fast path's decode step; None: on CUDA only
    attention: bool = True  # capture attention maps (local backend)
    attention_layers: list[Annotated[int, Field(ge=0, le=1000)]] | None = None  # None: every layer, in thirds
    attention_heads: Literal["mean", "max"] = "mean"
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    # ask: hold a step below min_confidence for a person (agent.approval); for a model, unknown counts as below.
    on_low_confidence: Literal["continue", "stop", "ask"] = "continue"
    # How long a held step waits for a person, and what happens then (see agent.approval).
    approval_timeout_s: float = Field(default=300.0, gt=0, le=86400)
    on_timeout: Literal["proceed", "skip", "stop"] = "stop"
    # When the text at the proposed point does not match what the reasoning named (OCR of the step's
    # screenshot, read before the step acts): go on (recorded), stop the run, or hold the step for a person.
    on_mismatch: Literal["continue", "stop", "ask"] = "continue"

    # Only what a file says is checked here: --base-url and the CLI's other overrides are the user's own choice.
    @field_validator("base_url")
    @classmethod
    def _trusted_server(cls, v: str | None) -> str | None:
        return None if v is None else trusted_model_server(v)

    @field_validator("api_key_env")
    @classmethod
    def _key_variable(cls, v: str) -> str:
        return file_env_name(v, also=("OPENAI_API_KEY",))

    @model_validator(mode="after")
    def _ask_needs_a_bar(self) -> "PolicySettings":
        if self.on_low_confidence == "ask" and self.min_confidence is None:
            raise ValueError("on_low_confidence: ask needs min_confidence (the bar below which a step waits for a person)")
        return self


class OcrSettings(_Strict):
    """OCR of each step's screenshot, off the loop's critical path (agent.ocr_worker; needs the ``ocr`` extra).

    ``enabled``: auto (the default) reads the screen when the ``ocr`` extra is installed and a model decides
    (a model step takes seconds, and OCR of a screenshot under one); a script plays faster than OCR reads on a
    small CPU, so it is off there unless asked for. ``steps``: every step's screenshot, or only those of steps
    that acted. ``catch_up_s``: how long the end of a run waits for OCR to catch up; what is left is recorded
    as not done. ``incremental``: read only the area that changed since the previous screenshot read (and reuse
    an identical one), with a full read at least every ``full_every`` reads (tools.ocr_incremental).
    """

    enabled: bool | Literal["auto"] = "auto"
    steps: Literal["all", "acting"] = "all"
    engine: str = Field(default="rapidocr", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    catch_up_s: float = Field(default=5.0, ge=0, le=600)
    incremental: bool = True
    full_every: int = Field(default=20, ge=1, le=1000)


class ScriptStep(_Strict):
    """A demonstration step: a computer_use (or browser) action, its coordinate given or found by target."""

    model_config = ConfigDict(extra="allow")

    action: str
    target: Target | None = None
    note: str | None = None
    # The step is played once for each item of this value (a list that setup saved, e.g. the words a benchmark
    # page asks to tick), with ``{item}`` the item; none, for an empty list.
    for_each: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

    def arguments(self) -> dict[str, Any]:
        """The action's arguments as written (everything but target, note and for_each)."""
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
            if not any(self.target.names().values()):
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


def _target_kind(value: Any) -> str:
    """Which kind of target a task names, so that a mistake is reported against that kind only (a bad start_url
    was also "site: required field is missing"); one naming both, or neither, is the URL kind's to refuse."""
    if isinstance(value, SiteTarget) or (isinstance(value, dict) and "site" in value and "start_url" not in value):
        return "site"
    return "url"


TaskTarget = Annotated[
    Annotated[SiteTarget, Tag("site")] | Annotated[UrlTarget, Tag("url")],
    Discriminator(_target_kind, custom_error_type="target", custom_error_message="give site: shop, or start_url"),
]


class Task(_Strict):
    """A task file."""

    name: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    environment: Literal["browser", "desktop"] = "browser"
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    target: TaskTarget | None = None  # browser tasks
    desktop: DesktopSpec | None = None  # desktop tasks
    allowed_origins: list[Origin] = Field(default_factory=list)
    # Folders (relative to the task file) whose pages a file: start_url or setup goto may open, besides the
    # task's own folder (e.g. an installed benchmark's pages); never / or a home folder.
    allowed_roots: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(default_factory=list, max_length=32)
    setup: list[SetupStep] = Field(default_factory=list, max_length=MAX_SETUP_STEPS)  # run before step 0
    settle: SettlePolicy = Field(default_factory=SettlePolicy)  # what the browser waits for after each action
    files: dict[str, FileSpec] = Field(default_factory=dict)
    checks: list[Check] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    browser: BrowserSettings = Field(default_factory=BrowserSettings)
    script: list[ScriptStep] | None = None
    # Actions that always wait for a person's yes before they act (agent.approval), e.g. [terminate, upload_file].
    ask_before: list[str] = Field(default_factory=list, max_length=64)
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    # The episode's seed: ``{seed}`` in setup (js, wait_for js, goto), the goal, the script and checks, so one task
    # file seeds a benchmark page for every episode (``Math.seedrandom({seed})``). An eval's seeds set it.
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    # Set by the loader and the loop, not by the file.
    source: Path | None = Field(default=None, exclude=True)
    files_root: Path | None = Field(default=None, exclude=True)  # a folder the user allows uploads from
    runtime: dict[str, str] = Field(default_factory=dict, exclude=True)  # {workdir}, {python} of a desktop run

    @field_validator("inputs", mode="before")
    @classmethod
    def _scalar_inputs(cls, v: Any) -> Any:
        # `product_name: Wireless headset` is shorthand for `{value: Wireless headset}`.
        if isinstance(v, dict):
            return {k: ({"value": str(x)} if isinstance(x, (str, int, float)) else x) for k, x in v.items()}
        return v

    @field_validator("ask_before")
    @classmethod
    def _known_actions(cls, v: list[str]) -> list[str]:
        names = (*COMPUTER_USE_ACTIONS, *BROWSER_TOOLS)
        unknown = [a for a in v if a not in names]
        if unknown:
            raise ValueError(f"unknown action {unknown[0]!r} in ask_before; use any of: {', '.join(names)}")
        return list(dict.fromkeys(v))

    @classmethod
    def recorded(cls, data: Any, *, run_id: str) -> "Task":
        """The task as run ``run_id`` recorded it: validated as a task file is, less the checks between fields (a
        file gets those with its lines; the recording passed them). :class:`RecordedTaskError` names the run and
        the first problem of one that does not validate."""
        try:
            return cls.model_validate(data, context={"defer_cross_checks": True})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise RecordedTaskError(
                f"run {run_id}: the recorded task is not valid ({_dotted(first['loc'])}: {first['msg']})"
            ) from None
        except RecursionError:
            raise RecordedTaskError(f"run {run_id}: the recorded task is nested too deeply") from None

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
            for name in ("setup", "settle", "allowed_roots"):
                if name in self.model_fields_set:
                    problems.append(((name,), f"{name} applies to browser tasks only; a desktop task has no page"))
            for i, step in enumerate(self.script or []):
                named = set(step.target.names()) if step.target is not None else set()
                if named - {"text"}:
                    problems.append(
                        (
                            ("script", i, "target"),
                            "desktop scripts give coordinates or a text target found by OCR ({text: ...}): there is "
                            f"no element tree to find {', '.join(sorted(named - {'text'}))} in",
                        )
                    )
                if step.action in BROWSER_TOOLS:
                    problems.append((("script", i, "action"), f"{step.action} is a browser action"))
        allowed = DESKTOP_CHECKS if self.environment == "desktop" else BROWSER_CHECKS
        for i, check in enumerate(self.checks):
            if check.type not in allowed:
                problems.append(
                    (
                        ("checks", i, "type"),
                        f"{check.type} checks do not apply to {self.environment} tasks (use {', '.join(allowed)})",
                    )
                )
        saved = [setup_step.save_as for setup_step in self.setup if setup_step.save_as]
        for i, setup_step in enumerate(self.setup):
            saved_name = setup_step.save_as
            if saved_name is not None and (saved_name in self.inputs or saved_name in RESERVED_VALUES):
                problems.append((("setup", i, "save_as"), f"{saved_name!r} is already the name of an input"))
        for name in self.inputs:
            if name in RESERVED_VALUES:
                problems.append((("inputs", name), f"{{{name}}} is Glassbox's own value; name the input otherwise"))
        dupes = sorted({name for name in saved if saved.count(name) > 1})
        if dupes:
            problems.append((("setup",), f"save_as names a value once: {', '.join(dupes)} is saved twice"))
        names = set(self.inputs) | set(RESERVED_VALUES) | set(saved)
        for i, step in enumerate(self.script or []):
            if step.for_each is not None and step.for_each not in set(saved) | set(self.inputs):
                problems.append((("script", i, "for_each"), f"{step.for_each!r} is not a value setup saves (save_as)"))
        for loc, text in self._templated_texts():
            repeated = loc[0] == "script" and self.script is not None and self.script[loc[1]].for_each is not None
            for ref in placeholders(text):
                if ref == "item" and repeated:
                    continue
                if ref not in names:
                    # {python} and {workdir} are a desktop run's: not offered to a browser task
                    offered = names - ({"python", "workdir"} if self.environment != "desktop" else set())
                    known = ", ".join(sorted(offered)) or "none"
                    problems.append(
                        (
                            loc,
                            f"refers to {{{ref}}}, which is not an input (inputs: {known}); "
                            f"write {{{{{ref}}}}} for the text {{{ref}}} itself",
                        )
                    )
                elif ref in self.inputs and self.inputs[ref].secret and _in_the_page(loc, self.checks):
                    # The page is not trusted with a secret: these get <secret>name</secret>, so would never match.
                    instead = (
                        "find the element by its label or a selector instead"
                        if loc[0] == "script"
                        else "a start URL is recorded and shown with every run; sign in with the secret in a step"
                        if loc[0] == "target"
                        else "check it with text_present, http_json or file_json, which compare it on this machine"
                    )
                    problems.append(
                        (
                            loc,
                            f"{{{ref}}} is a secret, and this text goes to the page, which is never given a secret (it "
                            f"would read <secret>{ref}</secret>); {instead}",
                        )
                    )
        for i, step in enumerate(self.script or []):
            args = step.arguments()
            if step.action == "key" and isinstance(args.get("keys"), list):
                from tools.actions import ActionError
                from tools.keys import playwright_chord, pyautogui_keys

                try:  # the device's own key names: a typo would fail every try of the step at run time
                    (pyautogui_keys if self.environment == "desktop" else playwright_chord)([str(k) for k in args["keys"]])
                except ActionError as exc:
                    problems.append((("script", i, "keys"), str(exc)))
            if step.action == "upload_file" and args.get("file") not in self.files:
                declared = ", ".join(sorted(self.files)) or "none"
                problems.append((("script", i, "file"), f"{args.get('file')!r} is not a declared file (files: {declared})"))
            if step.action == "goto_url":
                url = str(args.get("url", ""))
                if not placeholders(url) and not self._url_allowed(url):
                    local = urlsplit(url).scheme.lower() == "file" or self.is_local_page(self.target_url())
                    why = (
                        ": goto_url never opens local pages (a model could read files with it); open it in setup "
                        "(goto), or click a link to it"
                        if local
                        else " is outside allowed_origins"
                    )
                    problems.append((("script", i, "url"), f"{url!r}{why}"))
        if self.environment == "browser":
            for i, setup_step in enumerate(self.setup):
                goto = setup_step.goto and self.render_setup(setup_step.goto)
                if goto is not None and not self.is_local_page(goto) and not self._url_allowed(goto):
                    problems.append(
                        (
                            ("setup", i, "goto"),
                            f"{goto!r} is outside the task's origins (the target's and allowed_origins)",
                        )
                    )
        for i, check in enumerate(self.checks):
            # A check's GET runs on this machine with the real inputs filled in: keep it on the task's origins.
            if isinstance(check, HttpJsonCheck) and not self._check_url_allowed(check.url):
                problems.append(
                    (
                        ("checks", i, "url"),
                        f"{check.url!r} must be a path on the site (/...) or a URL of the target's origin or allowed_origins",
                    )
                )
        return problems

    def _templated_texts(self) -> list[tuple[tuple[Any, ...], str]]:
        texts: list[tuple[tuple[Any, ...], str]] = [(("goal",), self.goal)]
        if isinstance(self.target, UrlTarget):
            texts.append((("target", "start_url"), self.target.start_url))
        for i, step in enumerate(self.script or []):
            for key, value in step.arguments().items():
                if isinstance(value, str):
                    texts.append((("script", i, key), value))
            if step.target is not None:
                for key, value in step.target.names().items():
                    texts.append((("script", i, "target", key), value))
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

    def target_url(self) -> str:
        """The URL relative URLs resolve against: the start URL, or a stand-in for a bundled site."""
        return self.target.start_url if isinstance(self.target, UrlTarget) else _SITE_STAND_IN

    def _url_allowed(self, url: str) -> bool:
        """Whether ``url`` (absolute, or relative to the target) lands on the target's origin or an allowed one."""
        base = self.target_url()
        allowed = set(self.allowed_origins)
        try:
            allowed.add(url_origin(base))
        except ValueError:
            pass  # a file: start page has no origin to add
        try:
            return url_origin(urljoin(base, url)) in allowed
        except ValueError:
            return False

    # -- local pages (file: URLs) -----------------------------------------------------------------
    def is_local_page(self, url: str) -> bool:
        """Whether ``url`` (absolute, or relative to the start page) names a local page (a file: URL)."""
        return urlsplit(urljoin(self.target_url(), url)).scheme.lower() == "file"

    def page_roots(self) -> list[Path]:
        """Folders whose pages a file: start_url or setup goto may open: the task's folder and allowed_roots
        (resolved, symlinks followed). :func:`parse_task` has checked that each root may be used."""
        base = (self.source.parent if self.source else Path.cwd()).resolve()
        return [base, *((base / root).resolve() for root in self.allowed_roots)]

    def start_page(self) -> str:
        """The start URL as the browser opens it: ``{seed}`` and inputs filled in (URL-quoted), a file: URL resolved
        to an absolute one (checked again)."""
        url = self.target_url()
        if isinstance(self.target, UrlTarget):
            url = self.render_secret(url, escape=lambda value: quote(value, safe=""))  # no secret: refused at load
        return self.local_page_url(url) if self.is_local_page(url) else url

    def local_page_url(self, url: str, *, base: str | None = None) -> str:
        """The absolute file:// URL of a local page the harness may open; ValueError saying why not.

        ``url`` is a file: URL (``file:///abs``, or ``file:rel`` relative to the task file) or a URL relative
        to ``base`` (a file:// page). The path is resolved (symlinks and ``..``) and must be a regular file
        under :meth:`page_roots`.
        """
        # A file: URL is the task's own spelling (relative to the task file); anything else is relative to base.
        absolute = url if not base or urlsplit(url).scheme.lower() == "file" else urljoin(base, url)
        path_text = file_url_syntax(absolute)
        parts = urlsplit(absolute)
        folder = (self.source.parent if self.source else Path.cwd()).resolve()
        written = Path(path_text)
        candidate = written if written.is_absolute() else folder / written
        try:
            resolved = candidate.resolve(strict=True)
            mode = os.stat(resolved).st_mode
        except FileNotFoundError:
            raise ValueError(f"{url!r}: no such file {candidate}") from None
        except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop
            raise ValueError(f"{url!r}: cannot use {candidate}: {getattr(exc, 'strerror', None) or exc}") from None
        roots = self.page_roots()
        if not any(resolved.is_relative_to(root) for root in roots):
            shown = f" (resolves to {resolved})" if resolved != candidate else ""
            where = ", ".join(str(r) for r in roots)
            raise ValueError(
                f"{url!r}{shown} is outside the task's folder and allowed_roots ({where}); a task may open "
                "local pages only under them"
            )
        if not stat.S_ISREG(mode):
            raise ValueError(f"{url!r}: {resolved} is not a regular file")
        suffix = ("?" + parts.query if parts.query else "") + ("#" + parts.fragment if parts.fragment else "")
        return resolved.as_uri() + suffix

    def _check_url_allowed(self, url: str) -> bool:
        """A check's URL: a path (appended to the site's URL), or an absolute URL whose origin is written out
        (no ``{input}`` in it: an input could carry another host) and allowed."""
        if url.startswith("/"):
            return True
        try:
            origin = url_origin(url)
        except ValueError:
            return False
        return "{" not in origin and self._url_allowed(url)

    # -- values -----------------------------------------------------------------------------------
    def input_values(self) -> dict[str, str]:
        """Every input's value, secrets included. For the executor and checks only."""
        return {name: self._value(name, spec) for name, spec in self.inputs.items()}

    def input_value(self, name: str) -> str:
        """One input's value (KeyError for no such input; TaskError when its variable is not set)."""
        return self._value(name, self.inputs[name])

    def goal_values(self) -> list[str]:
        """The values of the task's inputs that are not secret (what a reasoning may name as its target)."""
        try:
            values = self.input_values()
        except TaskError:  # an input read from an unset variable: the run reports it elsewhere
            return []
        return [values[name] for name, spec in self.inputs.items() if not spec.secret and values.get(name)]

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
            if name == "seed":
                return str(self.seed)
            spec = self.inputs.get(name)
            if spec is None:  # a value setup saves (save_as), before setup has run
                return match.group(0)
            if spec.secret:
                return f"<secret>{name}</secret>"
            return self._value(name, spec)

        return _filled(text, fill)

    def render_setup(self, text: str) -> str:
        """A setup step's script or URL with ``{seed}`` filled in, and nothing else: JavaScript has braces of its own
        (``{x}`` is an object), and setup runs before the values it saves exist."""
        return text.replace("{seed}", str(self.seed))

    def _value(self, name: str, spec: InputSpec) -> str:
        if spec.env is not None:
            value = os.environ.get(spec.env)
            if value is not None:
                return value
            if spec.value is None:
                raise TaskError(self.source, [f"inputs.{name}.env: environment variable {spec.env} is not set"])
        return str(spec.value)

    def unset_env_inputs(self) -> list[tuple[str, str]]:
        """(input name, variable) of each input read from an environment variable that is not set."""
        return [
            (name, spec.env)
            for name, spec in self.inputs.items()
            if spec.env is not None and spec.value is None and os.environ.get(spec.env) is None
        ]

    def programs(self) -> list[tuple[tuple[Any, ...], str]]:
        """(field, command as shown to a person) of every program this task starts: the desktop app, command checks.

        Placeholders stay readable: inputs are filled in (secrets as ``<secret>name</secret>``), ``{python}`` is
        this Python and ``{workdir}`` the run's fresh working folder.
        """
        found: list[tuple[tuple[Any, ...], str]] = []
        if self.desktop is not None:
            found.append((("desktop", "command"), self._show_command(self.desktop.command)))
        for i, check in enumerate(self.checks):
            if isinstance(check, CommandCheck):
                found.append((("checks", i, "argv"), self._show_command(check.argv)))
        return found

    def _show_command(self, argv: list[str]) -> str:
        import shlex

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in self.runtime:
                return self.runtime[name]
            if name == "python":
                return sys.executable
            spec = self.inputs.get(name)
            if spec is None:
                return match.group(0)
            return f"<secret>{name}</secret>" if spec.secret or spec.env is not None else self._value(name, spec)

        return shlex.join(_filled(part, fill) for part in argv)

    def render_secret(self, text: str, *, escape: Callable[[str], str] | None = None) -> str:
        """Fill placeholders with real values, secrets included: for checks that never leave the machine.
        ``escape`` quotes each value for where it goes (``re.escape`` in a regular expression)."""
        values = {**self.input_values(), **self.runtime, "seed": str(self.seed)}

        def fill(match: re.Match[str]) -> str:
            value = values.get(match.group(1))
            if value is None:
                return match.group(0)
            return escape(value) if escape is not None else value

        return _filled(text, fill)

    def goal_text(self) -> str:
        return self.render(self.goal)

    def file_paths(self) -> dict[str, Path]:
        """The declared files, resolved (symlinks followed). :func:`parse_task` has checked that each one is a
        regular file inside :meth:`file_roots`."""
        base = self.source.parent if self.source else Path.cwd()
        return {name: (base / spec.path).resolve() for name, spec in self.files.items()}

    def file_roots(self) -> list[Path]:
        """Folders a task may upload files from: its own folder, and the folder the user named (if any)."""
        roots = [(self.source.parent if self.source else Path.cwd()).resolve()]
        if self.files_root is not None:
            roots.append(self.files_root.resolve())
        return roots

    def public_dict(self) -> dict[str, Any]:
        """The task as recorded: input values of secrets replaced, environment-sourced values left out."""
        data = self.model_dump(mode="json")
        for name, spec in self.inputs.items():
            if spec.secret:
                data["inputs"][name]["value"] = "<secret>" if spec.value is not None else None
        return data


def load_task(
    path: Path | str,
    *,
    files_root: Path | str | None = None,
    allow_programs: bool | None = None,
    require_env: bool = True,
) -> Task:
    """Load and validate a task file; raises :class:`TaskError` naming file, field, line and problem.

    ``files_root``: a folder besides the task's own that its files may come from (``--files-root``).
    ``allow_programs``: whether the task may start programs (a desktop app, command checks); None allows it
    only for the bundled tasks. ``require_env``: refuse inputs whose environment variable is not set (off for
    readers that never need the values).
    """
    path = Path(path)
    try:
        text = read_task_text(path)
    except YamlProblem as exc:
        raise TaskError(path, [exc.describe()]) from None
    return parse_task(text, source=path, files_root=files_root, allow_programs=allow_programs, require_env=require_env)


def parse_task(
    text: str,
    *,
    source: Path | None = None,
    files_root: Path | str | None = None,
    allow_programs: bool | None = None,
    require_env: bool = True,
) -> Task:
    """Validate task YAML ``text``. Without ``source`` the text is the caller's own: programs are allowed and
    files resolve against the working folder."""
    try:
        node, data = load_yaml(text)
    except YamlProblem as exc:
        raise TaskError(source, [exc.describe()]) from None
    if not isinstance(data, dict):
        raise TaskError(source, ["line 1: a task file must be a mapping of fields (name, goal, target, ...)"])
    inputs_as_written(node, data)
    try:
        task = Task.model_validate(data, context={"defer_cross_checks": True})
    except ValidationError as exc:
        raise TaskError(source, [_problem(err, node) for err in exc.errors()]) from None
    except RecursionError:  # cannot happen within task_yaml's depth limit; a clear error if it ever does
        raise TaskError(source, ["the task is nested too deeply"]) from None
    task.source = source
    problems = [f"{line_prefix(node, loc)}{_dotted(loc)}: {message}" for loc, message in task.cross_problems()]
    if files_root is not None:
        root = Path(files_root)
        if not root.is_dir():
            raise TaskError(source, [f"{FILES_ROOT_FLAG} {root}: not a folder"])
        task.files_root = root.resolve()
    for name, problem in _file_problems(task).items():
        loc = ("files", name, "path")
        problems.append(f"{line_prefix(node, loc)}{_dotted(loc)}: {problem}")
    for loc, problem in _page_problems(task):
        problems.append(f"{line_prefix(node, loc)}{_dotted(loc)}: {problem}")
    if require_env:
        for name, variable in task.unset_env_inputs():
            loc = ("inputs", name, "env")
            problems.append(
                f"{line_prefix(node, loc)}{_dotted(loc)}: environment variable {variable} is not set "
                "(set it before running this task)"
            )
    if not _programs_allowed(source, allow_programs):
        for loc, command in task.programs():
            problems.append(
                f"{line_prefix(node, loc)}{_dotted(loc)}: this task starts a program ({command}) and is not "
                f"one of the bundled tasks; run it with {PROGRAMS_FLAG} if you trust it"
            )
    if problems:
        raise TaskError(source, problems)
    return task


def _filled(text: str, fill: Callable[[re.Match[str]], str]) -> str:
    """``text`` with each ``{name}`` replaced by ``fill`` and each doubled brace written once."""
    return _PLACEHOLDER.sub(lambda m: _BRACES[m.group(0)] if m.group(1) is None else fill(m), text)


def placeholders(text: str) -> list[str]:
    """The names ``text`` refers to (``{name}``), leaving out doubled braces."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(text) if m.group(1) is not None]


def _in_the_page(loc: tuple[Any, ...], checks: list[Any]) -> bool:
    """Whether a templated text at ``loc`` is handed to the page: a script step's target, a js check's expression."""
    if loc[0] == "script" and len(loc) > 2 and loc[2] == "target":
        return True
    if loc[0] == "target":  # the start URL: the page, every record and the viewer see it
        return True
    return loc[0] == "checks" and isinstance(checks[loc[1]], JsCheck) and loc[2] == "expression"


def _programs_allowed(source: Path | None, allow: bool | None) -> bool:
    if allow is not None:
        return allow
    if source is None:
        return True  # text the caller wrote itself, not a file from elsewhere
    try:
        return source.resolve().is_relative_to(BUNDLED_TASKS)
    except (OSError, RuntimeError, ValueError):
        return False


def _file_problems(task: Task) -> dict[str, str]:
    """Each declared file that is missing, not a regular file, or outside the task's folder and ``files_root``."""
    base = task.source.parent if task.source else Path.cwd()
    roots = task.file_roots()
    problems: dict[str, str] = {}
    for name, spec in task.files.items():
        try:
            resolved = (base / spec.path).resolve(strict=True)
            mode = os.stat(resolved).st_mode
        except FileNotFoundError:
            problems[name] = f"no such file {(base / spec.path).resolve()}"
            continue
        except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop
            problems[name] = f"cannot use {spec.path!r}: {getattr(exc, 'strerror', None) or exc}"
            continue
        if not any(resolved.is_relative_to(root) for root in roots):
            where = " or ".join(str(r) for r in roots)
            shown = spec.path if str(resolved) == spec.path else f"{spec.path} (resolves to {resolved})"
            problems[name] = (
                f"{shown} is outside the task's folder ({where}); a task may upload only files under "
                f"its folder, or under a folder you name with {FILES_ROOT_FLAG}"
            )
        elif not stat.S_ISREG(mode):
            problems[name] = f"{resolved} is not a regular file"
    return problems


def _page_problems(task: Task) -> list[tuple[tuple[Any, ...], str]]:
    """allowed_roots that are missing or not the task's to name, and local pages (a file: start_url, setup
    gotos) that are missing or outside the roots."""
    if task.environment != "browser":
        return []
    problems: list[tuple[tuple[Any, ...], str]] = []
    folder = (task.source.parent if task.source else Path.cwd()).resolve()
    for i, root in enumerate(task.allowed_roots):
        loc: tuple[Any, ...] = ("allowed_roots", i)
        resolved = (folder / root).resolve()
        shown = f"{root!r}" if str(resolved) == root else f"{root!r} ({resolved})"
        if not resolved.is_dir():
            problems.append((loc, f"{root!r}: no such folder {resolved}"))
        elif _too_broad(resolved):
            # A root is the pages of one site or suite: the filesystem's root or a home folder would let a task
            # file put any file (keys, credentials) on screen, in front of the model and into the record.
            problems.append((loc, f"{shown} is too broad; name the folder that holds the task's pages (not / or a home folder)"))
        elif not _root_permitted(resolved, folder, task.files_root):
            # A task file from elsewhere could otherwise put any of the user's files (keys under ~/.ssh) on screen,
            # in front of a served model: outside its own folder, only installed packages' pages are public.
            problems.append(
                (
                    loc,
                    f"{shown} is outside the task's folder and outside installed Python packages; "
                    f"run with {FILES_ROOT_FLAG} {resolved} if you trust this task to show that folder's files",
                )
            )
    if problems:
        return problems  # pages cannot be judged against roots that are not usable
    start: str | None = None
    if isinstance(task.target, UrlTarget) and task.is_local_page(task.target.start_url):
        try:
            start = task.local_page_url(task.target.start_url)
        except ValueError as exc:
            problems.append((("target", "start_url"), str(exc)))
    for i, setup_step in enumerate(task.setup):
        goto = setup_step.goto and task.render_setup(setup_step.goto)
        if goto is None or not task.is_local_page(goto):
            continue
        if start is None and urlsplit(goto).scheme.lower() != "file":
            continue  # relative to a start page that is itself refused above
        try:
            task.local_page_url(goto, base=start)
        except ValueError as exc:
            problems.append((("setup", i, "goto"), str(exc)))
    return problems


def _root_permitted(root: Path, task_folder: Path, files_root: Path | None) -> bool:
    """A root under the task's folder, the user's ``--files-root`` or an installed-packages folder (site-packages:
    public pages such as the miniwob package's tasks)."""
    allowed = [task_folder] + ([files_root.resolve()] if files_root is not None else [])
    for key in ("purelib", "platlib"):
        allowed.append(Path(sysconfig.get_paths()[key]).resolve())
    allowed += [Path(p).resolve() for p in site.getsitepackages()]
    return any(root.is_relative_to(base) for base in allowed)


def _too_broad(folder: Path) -> bool:
    """The filesystem root, a home folder, or a folder above one (where keys and credentials live)."""
    if folder == Path(folder.anchor):
        return True
    homes = {Path.home()}
    try:
        homes |= {p for p in Path("/home").iterdir() if p.is_dir()} | {Path("/root")}
    except OSError:
        pass
    return any(home == folder or home.resolve().is_relative_to(folder) for home in homes)


def _dotted(loc: tuple[Any, ...] | list[Any]) -> str:
    return dotted(loc, "task")


def _problem(err: Mapping[str, Any], node: yaml.Node | None) -> str:
    raw = list(err["loc"])
    loc = [p for i, p in enumerate(raw) if not _is_union_tag(p, raw[i - 2] if i >= 2 else None, raw[i - 1] if i else None)]
    field = _dotted(loc)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        message = "required field is missing"
    elif err["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{line_prefix(node, tuple(loc))}{field}: {message}"


_CHECK_TAGS = {"http_json", "url_matches", "text_present", "js", "file_json", "command", "window_title"}


def _is_union_tag(part: Any, grandparent: Any, parent: Any = None) -> bool:
    # pydantic puts the union member into the location ("SiteTarget", "function-after[...]", a check's type right
    # after its index: checks.0.http_json.url, and the target's kind: target.url.start_url); "command" elsewhere is a
    # real field.
    if not isinstance(part, str):
        return False
    if parent == "target" and grandparent is None and part in ("site", "url"):
        return True
    return part[:1].isupper() or "[" in part or (grandparent == "checks" and part in _CHECK_TAGS)
