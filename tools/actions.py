"""The action space: Qwen3-VL's ``computer_use`` actions plus the browser extras, as pydantic models.

A model (or a script) emits tool calls such as::

    {"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [512, 300]}}
    {"name": "upload_file", "arguments": {"file": "main_image", "coordinate": [410, 620]}}
    {"name": "goto_url", "arguments": {"url": "http://127.0.0.1:8000/products"}}

:func:`parse_tool_call` validates one into an :data:`Action`, or raises :class:`ActionError` saying
what is wrong in words a model can act on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from tools.errors import StepError

COMPUTER_USE = "computer_use"
BROWSER_TOOLS = ("upload_file", "goto_url")


class ActionError(StepError, ValueError):
    """A tool call that is not a valid action; the message is fed back to the model."""


class ToolCall(BaseModel):
    """One tool call as the model wrote it (name + JSON arguments)."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


Coordinate = Annotated[list[float], Field(min_length=2, max_length=2)]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @property
    def tool(self) -> str:
        return COMPUTER_USE

    def to_tool_call(self) -> ToolCall:
        """The tool call that produces this action (inverse of :func:`parse_tool_call`)."""
        args = self.model_dump(exclude_none=True)
        if self.tool != COMPUTER_USE:
            args.pop("action")
        return ToolCall(name=self.tool, arguments=args)


class _PointAction(_Action):
    coordinate: Coordinate

    @field_validator("coordinate", mode="before")
    @classmethod
    def _numbers(cls, v: Any) -> Any:
        if isinstance(v, list) and any(isinstance(c, bool) for c in v):  # JSON true is no pixel (pydantic reads it as 1)
            raise ValueError("coordinate must hold two numbers, not true/false")
        return v

    @field_validator("coordinate")
    @classmethod
    def _finite(cls, v: list[float]) -> list[float]:
        if any(c != c or c in (float("inf"), float("-inf")) for c in v):
            raise ValueError("coordinate must hold two finite numbers")
        return v


class Key(_Action):
    """Press keys together, e.g. ``["ctrl", "a"]`` or ``["enter"]``."""

    action: Literal["key"]
    keys: list[str] = Field(min_length=1)


class Type(_Action):
    """Type text at the focused element. ``<secret>name</secret>`` stands for a task secret."""

    action: Literal["type"]
    text: str


class MouseMove(_PointAction):
    action: Literal["mouse_move"]


class LeftClick(_PointAction):
    action: Literal["left_click"]


class LeftClickDrag(_PointAction):
    """Drag from the current mouse position to ``coordinate``."""

    action: Literal["left_click_drag"]


class RightClick(_PointAction):
    action: Literal["right_click"]


class MiddleClick(_PointAction):
    action: Literal["middle_click"]


class DoubleClick(_PointAction):
    action: Literal["double_click"]


class TripleClick(_PointAction):
    action: Literal["triple_click"]


class Scroll(_Action):
    """Scroll vertically; positive ``pixels`` scrolls up (Qwen3-VL convention)."""

    action: Literal["scroll"]
    pixels: int
    coordinate: Coordinate | None = None


class HScroll(_Action):
    """Scroll horizontally; positive ``pixels`` scrolls right."""

    action: Literal["hscroll"]
    pixels: int
    coordinate: Coordinate | None = None


class Wait(_Action):
    action: Literal["wait"]
    time: float = Field(default=1.0, ge=0, le=60)


class Terminate(_Action):
    """End the task, saying whether it was accomplished."""

    action: Literal["terminate"]
    status: Literal["success", "failure"]


class Answer(_Action):
    action: Literal["answer"]
    text: str


class UploadFile(_PointAction):
    """Click the file input at ``coordinate`` and choose the task file named ``file``."""

    action: Literal["upload_file"]
    file: str

    @property
    def tool(self) -> str:
        return "upload_file"


class GotoUrl(_Action):
    """Open ``url`` in the current tab (only allowed origins). A relative URL resolves against the target's URL."""

    action: Literal["goto_url"]
    url: str = Field(min_length=1, max_length=8192)

    @field_validator("url")
    @classmethod
    def _http_or_relative(cls, v: str) -> str:
        if any(ord(c) < 32 or c == "\x7f" for c in v):
            raise ValueError("url may not contain control characters")
        try:
            parts = urlsplit(v.strip())
            parts.port  # noqa: B018  # raises ValueError for a port out of range
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if parts.scheme and parts.scheme.lower() not in ("http", "https"):
            raise ValueError(f"only http(s) URLs or paths relative to the site can be opened, not {parts.scheme}: URLs")
        if parts.scheme and not parts.netloc:
            raise ValueError("an http(s) URL needs a host, e.g. http://127.0.0.1:8000/products")
        return v

    @property
    def tool(self) -> str:
        return "goto_url"


Action = Annotated[
    Union[
        Key,
        Type,
        MouseMove,
        LeftClick,
        LeftClickDrag,
        RightClick,
        MiddleClick,
        DoubleClick,
        TripleClick,
        Scroll,
        HScroll,
        Wait,
        Terminate,
        Answer,
        UploadFile,
        GotoUrl,
    ],
    Field(discriminator="action"),
]
_ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)

COMPUTER_USE_ACTIONS = (
    "key",
    "type",
    "mouse_move",
    "left_click",
    "left_click_drag",
    "right_click",
    "middle_click",
    "double_click",
    "triple_click",
    "scroll",
    "hscroll",
    "wait",
    "terminate",
    "answer",
)
POINT_ACTIONS = (
    "mouse_move",
    "left_click",
    "left_click_drag",
    "right_click",
    "middle_click",
    "double_click",
    "triple_click",
    "upload_file",
)


def parse_tool_call(call: ToolCall, *, browser_tools: tuple[str, ...] = BROWSER_TOOLS) -> Action:
    """Validate a tool call into an action.

    ``browser_tools`` lists the extra functions the task allows (``upload_file``, ``goto_url``).

    >>> parse_tool_call(ToolCall(name="computer_use", arguments={"action": "left_click", "coordinate": [5, 9]})).coordinate
    [5.0, 9.0]
    """
    args = dict(call.arguments)
    if call.name == COMPUTER_USE:
        name = args.get("action")
        if not isinstance(name, str):
            raise ActionError("computer_use needs an 'action' argument, one of: " + ", ".join(COMPUTER_USE_ACTIONS))
        if name not in COMPUTER_USE_ACTIONS:
            raise ActionError(f"unknown computer_use action {name!r}; use one of: " + ", ".join(COMPUTER_USE_ACTIONS))
    elif call.name in BROWSER_TOOLS:
        if call.name not in browser_tools:
            raise ActionError(f"the tool {call.name!r} is not available in this task")
        args["action"] = call.name
    else:
        tools = ", ".join((COMPUTER_USE, *browser_tools))
        raise ActionError(f"unknown tool {call.name!r}; available tools: {tools}")
    try:
        return _ACTION_ADAPTER.validate_python(args)
    except ValidationError as exc:
        raise ActionError(f"invalid arguments for {args['action']}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p not in COMPUTER_USE_ACTIONS and p not in BROWSER_TOOLS)
        parts.append(f"{loc or 'arguments'}: {err['msg']}")
    return "; ".join(parts)
