"""Reasoning-action consistency: does the point that was acted on show what the model said it would act on?

The failure people fear most is the reasoning saying "click Sign in" while the click lands on "Register". For
each step that acts on a point, the texts the model *claimed* are compared with the texts *observed* there:

- claimed: quoted text in the reasoning ('Publish', "Sign in", “发布”, 「发布」), text named after an action verb
  ("click the Publish button", "点击发布按钮"), a script note of three words or fewer ("Sign in"), the tool
  call's ``text`` argument, and the goal's values that the reasoning mentions;
- observed: the DOM element's text (a browser knows it), the OCR line under the point, and the nearest OCR line
  when it is close (an empty input's label).

Where the reasoning says what it will do (a clause with an action verb), only the texts named there are claimed,
less those it turns down ("click 'Sign in', not 'Register'"); a text it only describes ("I see 'Register' and
'Sign in'") counts only when it names nothing that way.

``match``: some claimed text agrees with some observed text (same words after normalising case, width and
punctuation; one inside the other; or at least half of the claim's words). ``mismatch``: both sides have text
and nothing agrees. ``unknown``: the model named nothing, or there is no text at the point. The verdict is
conservative on purpose: a long reasoning names many things, and any of them agreeing is a match.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from difflib import SequenceMatcher

from tools.actions import POINT_ACTIONS, Action
from tools.ocr_views import PointText
from tools.views import ElementInfo
from tracer.schema import ConsistencyCheck

NEAREST_PX = 40.0  # an OCR line this close to the point counts as observed there (an input's label)
MAX_CLAIM = 60
# An element whose text is longer than a control's (a form, a panel, the page's body) holds the point but says
# nothing about what is under it: "Save" somewhere in a panel's text is no evidence that Save was clicked.
CONTAINER_TEXT = 60
_CONTAINERS = ("body", "html", "main", "form", "section", "article", "table", "tbody", "ul", "ol")
_QUOTED = re.compile(
    r"(?<!\w)'([^'\n]{1,60}?)'(?!\w)"
    r"|(?<!\w)\"([^\"\n]{1,60}?)\"(?!\w)"
    r"|“([^”\n]{1,60}?)”|‘([^’\n]{1,60}?)’|「([^」\n]{1,60}?)」|『([^』\n]{1,60}?)』|`([^`\n]{1,60}?)`"
)
_VERBS = (
    r"click|clicks|clicking|clicked|press|presses|pressing|tap|taps|tapping|hit|push"
    r"|select|selecting|choose|choosing|open|opening|focus|activate"
)
_GENERIC = r"button|link|tab|field|menu|icon|option|box|input|item|entry|checkbox|control|element"
_NAMED = re.compile(
    rf"\b(?:{_VERBS})\s+(?:on\s+)?(?:the\s+|a\s+|an\s+)?([^\n.,;:!?\"'“”‘’「」()]{{1,40}}?)"
    rf"(?:\s+(?:{_GENERIC}))?(?=\s*[\n.,;:!?()]|\s+(?:to|and|so|in|at|because|then|which|on|for|of|with)\b|\s*$)",
    re.IGNORECASE,
)
_NAMED_ZH = re.compile(
    r"(?:点击|单击|按下|选择|打开)(?:“|「)?([^\s，。；：！？、“”「」]{1,20}?)(?:”|」)?(?:按钮|链接|选项|菜单|输入框)?(?=[，。；：！？、\s]|$)"
)
# A CSS selector quoted in the reasoning ("left_click on selector='#subbtn'", a script's target) names no text on
# the screen: taken as a claim, every such click was a "mismatch" ('#subbtn' against the button's 'Submit').
# One compound selector (tag, then #id / .class / [attr] parts); each part starts with a character the one before
# cannot take, so matching is linear (a pattern that let repeats overlap backtracked for 37 s on 30 characters).
_COMPOUND = re.compile(r"(?:[A-Za-z][\w-]*)?(?:[#.][A-Za-z_][\w-]*|\[[^\]\n]*\])*")
_COMBINATOR = re.compile(r"[^\S\n]*[>+~][^\S\n]*|[^\S\n]+")


def _is_selector(claim: str) -> bool:
    """Compound selectors joined by spaces or > + ~, at least one with an #id, a .class or an [attribute]."""
    parts = _COMBINATOR.split(claim.strip())
    return all(p and _COMPOUND.fullmatch(p) for p in parts) and any(c in p for p in parts for c in "#.[")


_SCRIPT_PREFIX = re.compile(r"^Script step \d+/\d+:\s*")
# A script step without a note is described by its action and arguments ("left_click coordinate=[200, 310]"): that
# names nothing on screen, so it is no claim.
_GENERATED_NOTE = re.compile(r"^[a-z_]+ [a-z_]+=")
# Where the reasoning says what it will do: a sentence (or clause after ';') with an action verb. A text named there
# is what the model means to act on; one it only describes ("I see 'Register' and 'Sign in'") is not.
_CLAUSES = re.compile(r"[^.!?;。！？；\n]+")
_ACTION_WORD = re.compile(rf"\b(?:{_VERBS})\b|点击|单击|按下|选择|打开", re.IGNORECASE)
# A text right after one of these is what the model will *not* act on ("click 'Sign in', not 'Register'").
_NEGATION = re.compile(
    r"(?:\b(?:not|never|don't|do not|shouldn't|should not|won't|instead of|rather than|avoid|avoiding|without)\b"
    r"|不要|别|而不是|不是)(?:\W+\w+){0,3}\W*$",
    re.IGNORECASE,
)
_PRONOUNS = {"it", "this", "that", "them", "here", "there", "this one", "that one", "它", "这个", "那个"}
_ROLE_WORDS = {"button", "link", "textbox", "combobox", "checkbox", "tab", "menuitem", "option", "heading", "img"}
_ARTICLES = {"the", "a", "an", "this", "that", "these", "those", "its", "my", "your"}
# A kind of control named after its name ("the Northwind Goods heading"): the name is what shows there.
_TRAILING_ROLE = re.compile(
    r"\s+(?:button|link|heading|field|text ?box|input|tab|menu ?item|menu|checkbox|icon|option|label)$", re.IGNORECASE
)
_STOP = {"the", "a", "an", "to", "of", "on", "in", "and", "or", "for", "with", "my", "this", "that", "it", "its", "now", "then"}


def _without_role(claim: str) -> str:
    short = _TRAILING_ROLE.sub("", claim)
    return short if short.strip() else claim


def normalise(text: str) -> str:
    """Case, width and punctuation folded; words separated by one space (CJK characters kept)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch if ch.isalnum() else " " for ch in text)
    return " ".join(text.split())


def _words(text: str) -> set[str]:
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in normalise(text).split() if w not in _STOP and len(w) > 1}


def agrees(claim: str, seen: str) -> bool:
    """Whether a claimed text and an observed one name the same thing (see the module docstring)."""
    a, b = normalise(claim), normalise(seen)
    if not a or not b:
        return False
    if a == b or (len(a) >= 2 and a in b) or (len(b) >= 2 and b in a):
        return True
    if SequenceMatcher(None, a, b).ratio() >= 0.8:
        return True
    words = _words(claim)
    return bool(words) and len(words & _words(seen)) / len(words) >= 0.5


def _names(folded: str, value: str) -> bool:
    """Whether folded text names ``value`` as a whole: "stock 25", not the 25 inside "20261128-025722" or "a25f"
    (letters and digits of a Latin word around it); CJK text has no spaces, so a value inside it counts."""
    return re.search(rf"(?<![0-9a-z]){re.escape(value)}(?![0-9a-z])", folded) is not None


def claimed_texts(reasoning: str | None, tool_text: str | None = None, goal_values: Iterable[str] = ()) -> list[str]:
    """What the model said it would act on, in the order found, without repeats."""
    found: list[str] = []
    text = reasoning or ""
    script_note = _SCRIPT_PREFIX.sub("", text)
    for match in _QUOTED.finditer(text):
        found.append(next(g for g in match.groups() if g is not None))
    for match in _NAMED.finditer(text):
        found.append(match.group(1))
    for match in _NAMED_ZH.finditer(text):
        found.append(match.group(1))
    if (
        script_note != text
        and not found
        and 0 < len(script_note.split()) <= 3
        and not _GENERATED_NOTE.match(script_note)
        and not _ARTICLES & set(normalise(script_note).split())  # "pick the suggestion" says what, not which
    ):
        found.append(script_note)  # a script's short note names its target ("Sign in")
    if tool_text:
        found.append(tool_text)
    folded = normalise(text)
    for value in goal_values:
        if len(normalise(value)) >= 2 and _names(folded, normalise(value)):
            found.append(value)
    claims: list[str] = []
    for claim in found:
        claim = _without_role(" ".join(claim.split())[:MAX_CLAIM])
        if _is_selector(claim):
            continue
        if normalise(claim) and normalise(claim) not in _ROLE_WORDS | _PRONOUNS and claim not in claims:
            claims.append(claim)
    return claims


def intended_texts(reasoning: str | None) -> list[str]:
    """The texts the reasoning says it will act on: those quoted or named in a clause with an action verb, less
    the ones it turns down there ("not 'Register'") and pronouns ("click it")."""
    found: list[str] = []
    for clause in _CLAUSES.finditer(_SCRIPT_PREFIX.sub("", reasoning or "")):
        text = clause.group(0)
        if not _ACTION_WORD.search(text):
            continue
        spans = [(m.start(), next(g for g in m.groups() if g is not None)) for m in _QUOTED.finditer(text)]
        spans += [(m.start(1), m.group(1)) for m in _NAMED.finditer(text)]
        spans += [(m.start(1), m.group(1)) for m in _NAMED_ZH.finditer(text)]
        for start, claim in sorted(spans):
            claim = " ".join(claim.split())[:MAX_CLAIM]
            if _NEGATION.search(text[:start]) or normalise(claim) in _PRONOUNS or normalise(claim) in _ROLE_WORDS:
                continue
            if _is_selector(claim):
                continue
            if normalise(claim) and claim not in found:
                found.append(claim)
    return found


def observed_texts(element: ElementInfo | None, point: PointText | None) -> dict[str, str]:
    """The text at the executed point by source: the DOM element's text and its label (a form control's), then
    OCR's line under the point or, failing that, the nearest one."""
    seen: dict[str, str] = {}
    if element is not None:
        text = " ".join(element.text.split())
        if element.tag.lower() in _CONTAINERS or len(text) > CONTAINER_TEXT:
            text = ""  # a container's text: the OCR line under the point (or none: unknown) says what was there
        for source, shown in (("element", text), ("element_label", " ".join(element.label.split()))):
            if shown:
                seen[source] = shown[:200]
    if point is not None:
        if point.under is not None:
            seen["ocr_under"] = point.under.text
        elif point.nearest is not None and point.distance_px is not None and point.distance_px <= NEAREST_PX:
            seen["ocr_nearest"] = point.nearest.text
    return seen


def judge(claimed: list[str], observed: Mapping[str, str]) -> ConsistencyCheck:
    """The verdict for one step from its claimed and observed texts."""
    if not claimed:
        return ConsistencyCheck(verdict="unknown", observed=dict(observed), reason="the reasoning names nothing to act on")
    if not observed:
        return ConsistencyCheck(verdict="unknown", claimed=claimed, reason="no text was found at the executed point")
    for claim in claimed:
        for source, seen in observed.items():
            if agrees(claim, seen):
                return ConsistencyCheck(
                    verdict="match",
                    claimed=claimed,
                    observed=dict(observed),
                    matched=(claim, seen),
                    reason=f"{claim!r} agrees with the {source.replace('_', ' ')} text {seen!r}",
                )
    where = ", ".join(f"{source.replace('_', ' ')} {seen!r}" for source, seen in observed.items())
    names = ", ".join(repr(c) for c in claimed[:4])
    return ConsistencyCheck(
        verdict="mismatch",
        claimed=claimed,
        observed=dict(observed),
        reason=f"the reasoning names {names} but the point shows {where}",
    )


def check_action(
    action: Action | None,
    reasoning: str | None,
    *,
    goal_values: Iterable[str] = (),
    element: ElementInfo | None = None,
    point: PointText | None = None,
) -> ConsistencyCheck | None:
    """The verdict for a step that acts on a point; None for other steps (typing, keys, scrolling, ending)."""
    if action is None or getattr(action, "action", None) not in POINT_ACTIONS:
        return None
    tool_text = getattr(action, "text", None)
    claims = claimed_texts(reasoning, tool_text if isinstance(tool_text, str) else None, goal_values)
    # What it said it would act on, where it said so; else every text it named (a script's short note, a goal value).
    said = intended_texts(reasoning)
    intended = [c for c in claims if c in said or c == tool_text]
    return judge(intended or claims, observed_texts(element, point))
