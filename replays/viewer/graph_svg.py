"""Draw a run's decision graph as SVG: a flow of step cards wrapped into rows, read left to right, top to bottom.

Each step is one card: its number and marks (labelled correct / wrong, corrected, evidence), the reasoning node
filled with the confidence band's colour and the confidence as a number and a word, and the action with its
outcome; below it, when a model was asked about the step afterwards (``glassbox decide``), the counterfactual
decision (dashed, in its confidence's colour; the newest, with how many more). A card links to its step
(``link``); ``data-step`` and ``id="graph-step-N"`` let the run page highlight the selected one
(static/graph.js). Full texts are in each card's ``<title>`` (shown on hover).

Labels come from recorded text (untrusted): every value that goes into markup is escaped, attributes included.
Texts are cut by display width, not characters: East Asian wide characters take two columns.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape as _escape
from typing import Any

import networkx as nx

from replays import confidence
from tracer.safe_text import xml_text


def escape(text: str) -> str:
    """Markup-escaped, and without a character XML cannot hold: the graph is also served alone as image/svg+xml,
    which one control character in a model's reasoning would make unreadable."""
    return _escape(xml_text(text))


CARD_W, CARD_H, GAP_X, GAP_Y, PAD = 164, 118, 18, 30, 18
NODE_W = CARD_W - 12
HEADER_H, REASON_H, ACTION_H = 18, 56, 28
CF_H = 40  # the counterfactual row added to every card when any step has one
UNIT_PX = 6.4  # one narrow character at 11 px; a wide (CJK) character is two
MAX_WIDTH = 1280  # fits a 1366 px window beside the page's margins
_ACTION_KINDS = {"action", "parse_error", "backend_error", "low_confidence"}
_ERROR_KINDS = {"parse_error": "parse error", "backend_error": "backend error", "low_confidence": "low confidence"}
_OUTCOME = {"ok": ("", "ok"), "error": ("✗", "error"), "skipped": ("⏭", "skipped")}
# Inside the SVG so the graph looks the same inline on the run page and served alone (/api/runs/ID/graph).
_STYLE = (
    "<style>svg.graph{max-width:100%;height:auto;font-family:system-ui,sans-serif}"
    "svg.graph .gstep{cursor:pointer}"
    "svg.graph .gstep:hover .frame,svg.graph .gstep:focus .frame{stroke:#6b7280}"
    "svg.graph .gstep.sel .frame{stroke:#111827;stroke-width:3;fill:#eef2ff}"
    "svg.graph .gstep.labelled-wrong .frame{stroke:#b91c1c}"
    "svg.graph .gstep.sel.labelled-wrong .frame{stroke:#7f1d1d}"
    "svg.graph .gstep.mismatch .frame{stroke:#c2410c;stroke-dasharray:6 3}"
    "svg.graph .counterfactual rect{stroke-dasharray:4 3}</style>"
)
_OUTCOME_STROKE = {"ok": "#6b7280", "error": "#b91c1c", "skipped": "#b45309"}
MARKS = {"correct": "✓", "wrong": "✗", "corrected": "✎", "evidence": "◎", "mismatch": "≠"}  # explained by the page's key


def display_width(text: str) -> int:
    """Columns ``text`` takes: East Asian wide and fullwidth characters 2, combining marks 0, others 1."""
    return sum(_char_width(c) for c in text)


def cut_to_width(text: str, width: int) -> str:
    """``text`` on one line within ``width`` columns, ending in "…" when it was cut."""
    text = " ".join(text.split())
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for c in text:
        w = _char_width(c)
        if used + w > width - 1:  # room for the ellipsis
            break
        out.append(c)
        used += w
    return "".join(out).rstrip() + "…"


def wrap_to_width(text: str, width: int, lines: int = 2) -> list[str]:
    """``text`` in at most ``lines`` lines of ``width`` columns, the last ending in "…" when it was cut."""
    text = " ".join(text.split())
    out: list[str] = []
    while text and len(out) < lines - 1 and display_width(text) > width:
        line, used = [], 0
        for c in text:
            if used + _char_width(c) > width:
                break
            line.append(c)
            used += _char_width(c)
        head = "".join(line)
        if " " in head and not text[len(head) :].startswith(" "):  # break at a space where there is one
            head = head[: head.rindex(" ")]
        out.append(head.rstrip())
        text = text[len(head) :].lstrip()
    if text or not out:
        out.append(cut_to_width(text, width))
    return out


def _char_width(c: str) -> int:
    if unicodedata.combining(c) or unicodedata.category(c) in ("Cc", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1


@dataclass
class _Card:
    step: int
    reasoning: dict[str, Any] | None = None
    action: dict[str, Any] | None = None
    action_kind: str = ""
    outcome: dict[str, Any] | None = None
    observation: dict[str, Any] | None = None
    others: list[dict[str, Any]] = field(default_factory=list)
    counterfactuals: list[dict[str, Any]] = field(default_factory=list)  # decisions asked for afterwards, oldest first
    retry_in: bool = False  # the step before it failed: the flow into it is a retry


def graph_svg(
    graph: nx.DiGraph,
    *,
    link: str = "#step-{step}",
    verdicts: Mapping[int, str] | None = None,
    corrected: frozenset[int] | set[int] = frozenset(),
    mismatched: frozenset[int] | set[int] = frozenset(),
    max_width: int = MAX_WIDTH,
) -> str:
    """The graph's steps as wrapped rows of cards. ``verdicts``: each labelled step's latest verdict ("correct" /
    "wrong"); ``corrected``: steps a person gave a correction for (a gate's replacement is read from the graph);
    ``mismatched``: steps whose click does not show what the reasoning named (OCR's verdict; the step's own is read
    from the graph)."""
    verdicts = verdicts or {}
    cards: dict[int, _Card] = {}
    ends: list[dict[str, Any]] = []
    for node, data in graph.nodes(data=True):
        if "/" in str(node):  # a branch's nodes (attach_branch): drawn on the branch's own page
            continue
        step = _as_int(data.get("step"))
        kind = str(data.get("kind", ""))
        if step is None:
            ends.append(dict(data))
            continue
        card = cards.setdefault(step, _Card(step))
        if kind == "reasoning":
            card.reasoning = dict(data)
        elif kind in _ACTION_KINDS:
            card.action, card.action_kind = dict(data), kind
        elif kind == "outcome":
            card.outcome = dict(data)
        elif kind == "counterfactual":
            card.counterfactuals.append(dict(data))
        elif kind == "observation":
            card.observation = dict(data)
            card.retry_in = any(graph.edges[e].get("kind") == "retry" for e in graph.in_edges(node))
        else:
            card.others.append(dict(data))
    ordered = [cards[k] for k in sorted(cards)]
    for card in ordered:
        card.counterfactuals.sort(key=lambda d: str(d.get("created_at", "")))
    card_h = CARD_H + (CF_H if any(c.counterfactuals for c in ordered) else 0)
    cells = len(ordered) + (1 if ends else 0)
    columns = max(1, min(cells, (max_width - 2 * PAD + GAP_X) // (CARD_W + GAP_X)))
    rows = max(1, -(-cells // columns))
    width = 2 * PAD + columns * CARD_W + (columns - 1) * GAP_X
    height = 2 * PAD + rows * card_h + (rows - 1) * GAP_Y

    def origin(i: int) -> tuple[int, int]:
        return PAD + (i % columns) * (CARD_W + GAP_X), PAD + (i // columns) * (card_h + GAP_Y)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'class="graph" role="img" aria-label="decision graph: {len(ordered)} steps in {rows} row{"s" if rows > 1 else ""}" '
        f'data-columns="{columns}" data-rows="{rows}">',
        _STYLE,
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#6b7280"/></marker>'
        '<marker id="arrow-retry" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#b91c1c"/></marker></defs>',
    ]
    for i in range(1, cells):  # the flow between consecutive cards, and from a row's end to the next row's start
        retry = i < len(ordered) and ordered[i].retry_in
        parts.append(_connector(origin(i - 1), origin(i), retry=retry, card_h=card_h))
    for i, card in enumerate(ordered):
        parts.append(
            _card_svg(
                card, *origin(i), link, verdicts.get(card.step), card.step in corrected, card.step in mismatched, card_h=card_h
            )
        )
    if ends:
        parts.append(_end_svg(ends[0], *origin(len(ordered))))
    parts.append("</svg>")
    return "".join(parts)


def _connector(a: tuple[int, int], b: tuple[int, int], *, retry: bool, card_h: int = CARD_H) -> str:
    (ax, ay), (bx, by) = a, b
    y_from = ay + HEADER_H + REASON_H + 10 + ACTION_H / 2  # the action's middle
    y_to = by + HEADER_H + REASON_H / 2  # the next reasoning's middle
    x_from, x_to = ax + 6 + NODE_W, bx + 6
    if by == ay:
        mid = x_from + (x_to - x_from) / 2
        d = f"M {x_from} {y_from} H {mid} V {y_to} H {x_to}"
    else:  # wrap: down into the gap between rows, back to the left, down into the next row's first card
        gap = ay + card_h + GAP_Y / 2
        d = f"M {x_from} {y_from} H {x_from + 8} V {gap} H {PAD / 2} V {y_to} H {x_to}"
    colour, dash, marker = ("#b91c1c", ' stroke-dasharray="4 3"', "arrow-retry") if retry else ("#6b7280", "", "arrow")
    kind = "retry" if retry else "next"
    return f'<path class="edge edge-{kind}" d="{d}" fill="none" stroke="{colour}"{dash} marker-end="url(#{marker})"/>'


def _card_svg(
    card: _Card,
    x: int,
    y: int,
    link: str,
    verdict: str | None,
    corrected: bool,
    mismatch: bool = False,
    *,
    card_h: int = CARD_H,
) -> str:
    step = card.step
    reasoning = card.reasoning or {}
    value = _confidence(reasoning.get("confidence")) if card.reasoning is not None else None
    style = confidence.style(value)
    band = style.band.value
    conf_text = f"{confidence.number(value)} {band}" if value is not None else band
    evidence = bool(reasoning.get("evidence"))
    corrected = corrected or bool(reasoning.get("corrected"))
    mismatch = mismatch or reasoning.get("consistency") == "mismatch"
    marks = []
    if mismatch:
        marks.append(MARKS["mismatch"])
    if verdict in ("correct", "wrong"):
        marks.append(MARKS[verdict])
    if corrected:
        marks.append(MARKS["corrected"])
    if evidence:
        marks.append(MARKS["evidence"])

    action = card.action or (card.others[0] if card.others else None)
    outcome_status = str((card.outcome or {}).get("status", "")) if card.outcome else ""
    if card.action_kind in _ERROR_KINDS:
        action_text = f"{_ERROR_KINDS[card.action_kind]}: {action.get('label', '') if action else ''}"
        symbol, outcome_word, stroke, fill = "✗", "error", "#b91c1c", "#fee2e2"
    else:
        action_text = str(action.get("label", "")) if action else "—"
        symbol, outcome_word = _OUTCOME.get(outcome_status, ("", outcome_status))
        stroke, fill = _OUTCOME_STROKE.get(outcome_status, "#6b7280"), "#ffffff"
        if outcome_status == "error":
            fill = "#fee2e2"

    title = [f"step {step}"]
    if card.observation and card.observation.get("url"):
        title.append(f"page: {card.observation['url']}")
    title.append(f"confidence: {conf_text}")
    title.append(f"reasoning: {reasoning.get('detail') or reasoning.get('label') or '(none)'}")
    title.append(f"action: {action_text}" + (f" → {outcome_word}" if outcome_word else ""))
    if card.outcome and outcome_status == "error":
        title.append(f"error: {card.outcome.get('label', '')}")
    for other in card.others[1:] if card.action is None else card.others:
        title.append(f"{other.get('kind', '')}: {other.get('label', '')}")
    if verdict in ("correct", "wrong"):
        title.append(f"labelled {verdict}")
    if corrected:
        title.append("corrected by a person")
    if evidence:
        title.append("evidence crop recorded")
    if mismatch:
        title.append("mismatch: the text at the point is not what the reasoning named")
    if card.retry_in:
        title.append("retried after the previous step failed")
    for cf in card.counterfactuals:
        title.append(_counterfactual_line(cf))

    classes = ["gstep", f"conf-{band}"]
    if verdict in ("correct", "wrong"):
        classes.append(f"labelled-{verdict}")
    if corrected:
        classes.append("corrected")
    if evidence:
        classes.append("has-evidence")
    if mismatch:
        classes.append("mismatch")
    if outcome_word:
        classes.append(f"outcome-{outcome_word}")
    if card.counterfactuals:
        classes.append("has-counterfactual")
    href = link.format(step=step)
    nx_, ry, ay = x + 6, y + HEADER_H, y + HEADER_H + REASON_H + 10
    unit = int((NODE_W - 12) / UNIT_PX)
    head = f"step {step}" + (f"  {' '.join(marks)}" if marks else "")
    a = escape
    return (
        f'<a class="{" ".join(classes)}" id="graph-step-{step}" href="{a(href)}" data-step="{step}" '
        f'data-confidence="{"" if value is None else f"{value:.4g}"}" data-band="{band}">'
        f"<title>{a(chr(10).join(title))}</title>"
        f'<rect class="frame" x="{x}" y="{y}" width="{CARD_W}" height="{card_h}" rx="8" fill="#f9fafb" stroke="#e5e7eb"/>'
        f'<text class="head" x="{nx_ + 2}" y="{y + 13}" font-size="11" font-weight="600">{a(head)}</text>'
        f'<rect class="reasoning" x="{nx_}" y="{ry}" width="{NODE_W}" height="{REASON_H}" rx="6" fill="{a(style.colour)}"/>'
        f'<text class="conf" x="{nx_ + 6}" y="{ry + 15}" font-size="12" font-weight="700" fill="{a(style.ink)}" '
        f'style="fill:{a(style.ink)}">{a(conf_text)}</text>'
        + "".join(
            f'<text class="why" x="{nx_ + 6}" y="{ry + 31 + 14 * n}" font-size="11" fill="{a(style.ink)}" '
            f'style="fill:{a(style.ink)}">{a(line)}</text>'
            for n, line in enumerate(wrap_to_width(str(reasoning.get("label", "") or "(no reasoning)"), unit))
        )
        + f'<line x1="{nx_ + NODE_W / 2}" y1="{ry + REASON_H}" x2="{nx_ + NODE_W / 2}" y2="{ay}" stroke="#6b7280" '
        f'marker-end="url(#arrow)"/>'
        f'<rect class="action" x="{nx_}" y="{ay}" width="{NODE_W}" height="{ACTION_H}" rx="6" fill="{fill}" '
        f'stroke="{stroke}"/>'
        f'<text x="{nx_ + 6}" y="{ay + 18}" font-size="11">{a(cut_to_width(f"{symbol} {action_text}".strip(), unit))}</text>'
        + _counterfactual_svg(card.counterfactuals, nx_, ay + ACTION_H + 6, unit)
        + "</a>"
    )


def _counterfactual_line(data: dict[str, Any]) -> str:
    value = _confidence(data.get("confidence"))
    band = confidence.style(value).band.value
    conf_text = f"{confidence.number(value)} {band}" if value is not None else band
    model = str(data.get("model") or data.get("policy") or "a model")
    line = f"counterfactual ({model}): {data.get('label', '')} · confidence {conf_text}"
    if data.get("detail"):
        line += f" · {data['detail']}"
    return line + ("" if data.get("attention") else " · attention not computed")


def _counterfactual_svg(decisions: list[dict[str, Any]], x: int, y: int, unit: int) -> str:
    """The newest counterfactual of a step (and how many there are), filled with its confidence band's colour:
    a line saying it is one and how sure the model was, a line with its action."""
    if not decisions:
        return ""
    newest = decisions[-1]
    value = _confidence(newest.get("confidence"))
    style = confidence.style(value)
    band = style.band.value
    conf_text = f"{confidence.number(value)} {band}" if value is not None else band
    count = f" ({len(decisions)})" if len(decisions) > 1 else ""
    head = cut_to_width(f"↳ asked{count}: {conf_text}", unit)
    action = cut_to_width(str(newest.get("label", "")), unit)
    a = escape
    ink = a(style.ink)
    return (
        f'<g class="counterfactual" data-decision="{a(str(newest.get("decision_id", "")))}" data-band="{band}" '
        f'data-count="{len(decisions)}" data-confidence="{"" if value is None else f"{value:.4g}"}">'
        f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{CF_H - 6}" rx="6" fill="{a(style.colour)}" stroke="#4b5563"/>'
        f'<text x="{x + 6}" y="{y + 13}" font-size="10" font-weight="600" fill="{ink}" style="fill:{ink}">{a(head)}</text>'
        f'<text x="{x + 6}" y="{y + 27}" font-size="11" fill="{ink}" style="fill:{ink}">{a(action)}</text>'
        "</g>"
    )


def _end_svg(data: dict[str, Any], x: int, y: int) -> str:
    status = str(data.get("status", ""))
    label = str(data.get("label", ""))
    stroke = {"succeeded": "#15803d", "failed": "#b91c1c"}.get(status, "#6b7280")
    unit = int((NODE_W - 12) / UNIT_PX)
    return (
        f'<g class="gend" data-status="{escape(status)}"><title>{escape(label)}</title>'
        f'<rect x="{x}" y="{y + HEADER_H}" width="{CARD_W}" height="{REASON_H + 10 + ACTION_H}" rx="18" fill="#ffffff" '
        f'stroke="{stroke}" stroke-width="2"/>'
        f'<text x="{x + 10}" y="{y + HEADER_H + 22}" font-size="12" font-weight="700">{escape(cut_to_width(status, unit))}</text>'
        + "".join(
            f'<text x="{x + 10}" y="{y + HEADER_H + 42 + 14 * n}" font-size="11">{escape(line)}</text>'
            for n, line in enumerate(wrap_to_width(label.split(":", 1)[-1].strip(), unit, lines=3))
        )
        + "</g>"
    )


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _confidence(value: Any) -> float | None:
    """A node's confidence; None when it has none (unknown) or an unusable one."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if v != v or v < 0 else v
