"""Draw a run's decision graph as SVG: one column per step, one row per kind of node; nodes link to steps.

Labels come from recorded text (untrusted): every value that goes into markup is escaped, attributes included.
"""

from __future__ import annotations

from html import escape

import networkx as nx

ROWS = {
    "observation": 0,
    "reasoning": 1,
    "action": 2,
    "parse_error": 2,
    "backend_error": 2,
    "low_confidence": 2,
    "outcome": 3,
    "end": 1,
}
COLOURS = {
    "observation": "#e0e7ff",
    "reasoning": "#fef3c7",
    "action": "#dcfce7",
    "outcome": "#f3f4f6",
    "parse_error": "#fee2e2",
    "backend_error": "#fee2e2",
    "low_confidence": "#ffedd5",
    "end": "#e5e7eb",
}
COL_W, ROW_H, NODE_W, NODE_H = 120, 54, 104, 34


def graph_svg(graph: nx.DiGraph, *, link: str = "#step-{step}") -> str:
    columns: dict[str, int] = {}
    last = 0
    for node, data in graph.nodes(data=True):
        step = data.get("step")
        columns[node] = int(step) if step is not None else -1
        last = max(last, columns[node])
    positions: dict[str, tuple[float, float]] = {}
    for node, data in graph.nodes(data=True):
        col = columns[node] if columns[node] >= 0 else last + 1
        row = ROWS.get(data.get("kind", ""), 1)
        positions[node] = (16 + col * COL_W, 16 + row * ROW_H)
    width = 32 + (last + 2) * COL_W
    height = 32 + 4 * ROW_H
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="graph" role="img" '
        f'aria-label="decision graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#9ca3af"/></marker></defs>',
    ]
    for a, b, data in graph.edges(data=True):
        (x1, y1), (x2, y2) = positions[a], positions[b]
        dashed = ' stroke-dasharray="4 3"' if data.get("kind") in ("retry", "branch") else ""
        colour = "#ef4444" if data.get("kind") == "retry" else "#9ca3af"
        sx, sy = x1 + NODE_W / 2, y1 + NODE_H
        ex, ey = x2 + NODE_W / 2, y2
        if y2 <= y1:  # back to the top row of the next column
            sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
        parts.append(f'<line x1="{sx}" y1="{sy}" x2="{ex}" y2="{ey}" stroke="{colour}"{dashed} marker-end="url(#arrow)"/>')
    for node, data in graph.nodes(data=True):
        x, y = positions[node]
        kind = data.get("kind", "")
        fill = COLOURS.get(kind, "#fff")
        if kind == "outcome" and data.get("status") == "error":
            fill = "#fecaca"
        label = str(data.get("label", ""))
        short = label if len(label) <= 16 else label[:15] + "…"
        step = data.get("step")
        href = link.format(step=step) if step is not None else "#"
        parts.append(
            f'<a href="{escape(href)}" data-step="{escape(str(step)) if step is not None else ""}"><g>'
            f"<title>{escape(kind)}: {escape(label)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{escape(fill)}" stroke="#d1d5db"/>'
            f'<text x="{x + NODE_W / 2}" y="{y + NODE_H / 2 + 4}" text-anchor="middle" font-size="11">{escape(short)}</text>'
            f"</g></a>"
        )
    parts.append("</svg>")
    return "".join(parts)
