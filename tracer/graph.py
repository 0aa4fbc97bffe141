"""The decision graph of a run (networkx): observation -> reasoning -> action -> outcome -> next observation.

Parse errors and low-confidence stops are their own nodes; an error leads to the next observation by a
``retry`` edge. A replay or fork of a run attaches as a branch from the step it started at; a decision a model
was asked for afterwards (``glassbox decide``, :mod:`tracer.decisions`) attaches as a counterfactual branch leaving
the step's observation.

    steps, damaged = split_entries(read_step_entries(run_dir))
    graph = run_graph(read_run(run_dir), steps, damaged=damaged)
    export(graph, "mermaid")
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Literal

import networkx as nx

from tools.actions import Action
from tracer.decisions import CounterfactualDecision
from tracer.run_files import STEPS_FILE, UnreadableStep
from tracer.safe_text import CONTROL, json_text, xml_text
from tracer.schema import RunRecord, StepErrorKind, StepRecord

Format = Literal["json", "graphml", "mermaid"]


_NO_ACTION = {
    StepErrorKind.parse: "parse_error",
    StepErrorKind.backend: "backend_error",
    StepErrorKind.low_confidence: "low_confidence",
}


def run_graph(
    run: RunRecord,
    steps: list[StepRecord],
    *,
    damaged: Sequence[UnreadableStep] = (),
    graph: nx.DiGraph | None = None,
    prefix: str = "",
) -> nx.DiGraph:
    """Build (or extend ``graph`` with) the decision graph of one run. Node ids are ``{prefix}{kind}:{index}``.

    ``damaged``: lines of ``steps.jsonl`` that cannot be read (:func:`tracer.run_files.split_entries`), each a
    ``damaged:{line}`` node in its place in the chain, so that a graph of a damaged run says what it lacks."""
    g = graph if graph is not None else nx.DiGraph(run_id=run.run_id, task=run.task_name, policy=run.policy)
    previous_end: str | None = None
    previous_error = False
    # file order: a damaged line stands for the step after the readable one before it
    entries: list[StepRecord | UnreadableStep] = sorted([*steps, *damaged], key=lambda e: (e.index, isinstance(e, StepRecord)))
    for step in entries:
        if isinstance(step, UnreadableStep):
            node = f"{prefix}damaged:{step.line}"
            label = f"line {step.line + 1} of {STEPS_FILE} cannot be read: {_short(step.unreadable, 120)}"
            g.add_node(node, kind="damaged", step=step.index, run_id=run.run_id, label=label)
            if previous_end is not None:
                g.add_edge(previous_end, node, kind="next")
            previous_end, previous_error = node, False
            continue
        i = step.index
        obs, think = f"{prefix}obs:{i}", f"{prefix}think:{i}"
        g.add_node(
            obs,
            kind="observation",
            step=i,
            run_id=run.run_id,
            label=f"screen {i}",
            url=step.url or "",
            screenshot=step.screenshot,
        )
        if previous_end is not None:
            g.add_edge(previous_end, obs, kind="retry" if previous_error else "next")
        reasoning = step.reasoning or ""
        g.add_node(
            think,
            kind="reasoning",
            step=i,
            run_id=run.run_id,
            label=_short(reasoning) or "(no reasoning)",
            detail=_short(reasoning, 2000),  # the whole reasoning (within reason) for a hover; label is the excerpt
            evidence=step.evidence is not None,  # an evidence crop of what was acted on is recorded
            corrected=step.gate is not None and step.gate.decision == "replace",  # a person (or a guard) replaced the action
            consistency=step.consistency.verdict if step.consistency is not None else "",  # reasoning vs the point
        )
        if step.confidence is not None:  # unknown: no attribute (JSON null would do, GraphML has no None)
            g.nodes[think]["confidence"] = step.confidence
        g.add_edge(obs, think, kind="think")
        if step.error_kind is not None and step.error_kind in _NO_ACTION:  # the step failed before anything was decided to act on
            kind = _NO_ACTION[step.error_kind]
            node = f"{prefix}{kind}:{i}"
            g.add_node(node, kind=kind, step=i, run_id=run.run_id, label=_short(step.error or ""))
            g.add_edge(think, node, kind="failed")
            previous_end, previous_error = node, True
            continue
        act, out = f"{prefix}act:{i}", f"{prefix}out:{i}"
        g.add_node(act, kind="action", step=i, run_id=run.run_id, label=_step_action_label(step))
        g.add_node(
            out,
            kind="outcome",
            step=i,
            run_id=run.run_id,
            label=step.outcome if not step.error else _short(step.error),
            status=step.outcome,
        )
        g.add_edge(think, act, kind="decide")
        g.add_edge(act, out, kind="execute")
        previous_end, previous_error = out, step.outcome == "error"
    end = f"{prefix}end"
    g.add_node(
        end, kind="end", run_id=run.run_id, label=f"{run.status.value}: {_short(run.end_reason or '')}", status=run.status.value
    )
    if previous_end is not None:
        g.add_edge(previous_end, end, kind="end")
    return g


def attach_branch(graph: nx.DiGraph, branch: RunRecord, steps: list[StepRecord], from_step: int) -> nx.DiGraph:
    """Attach a replay/fork run as a branch leaving the parent's observation ``from_step``."""
    prefix = f"{branch.run_id}/"
    run_graph(branch, steps, graph=graph, prefix=prefix)
    first = f"{prefix}obs:{steps[0].index}" if steps else f"{prefix}end"
    graph.add_edge(f"obs:{from_step}", first, kind="branch", branch=branch.run_id)
    return graph


def attach_counterfactuals(graph: nx.DiGraph, decisions: list[CounterfactualDecision]) -> nx.DiGraph:
    """Attach each counterfactual decision as a node ``cf:{step}:{id}`` with a ``counterfactual`` edge from the
    observation of its step (a decision about a step the graph does not hold is left out)."""
    for d in decisions:
        obs = f"obs:{d.step}"
        if obs not in graph:
            continue
        node = f"cf:{d.step}:{d.id}"
        what = f"{d.action} ({d.coordinate[0]:.0f}, {d.coordinate[1]:.0f})" if d.action and d.coordinate else d.action
        graph.add_node(
            node,
            kind="counterfactual",
            step=d.step,
            run_id=str(graph.graph.get("run_id", "")),
            label=_short(what or f"no action: {d.error or 'nothing decided'}", 60),
            detail=_short(d.reasoning or "", 2000),
            model=d.model or "",
            policy=d.policy,
            decision_id=d.id,
            created_at=d.created_at.isoformat(),
            attention=bool(d.attention),
            **({"confidence": d.confidence} if d.confidence is not None else {}),  # unknown: none (GraphML has no None)
            error=d.error or "",
        )
        graph.add_edge(obs, node, kind="counterfactual")
    return graph


def export(graph: nx.DiGraph, fmt: Format) -> str:
    """Serialise as node-link JSON, GraphML or a Mermaid flowchart."""
    if fmt == "json":
        return json_text(json.dumps(nx.node_link_data(graph, edges="edges"), ensure_ascii=False, indent=1))
    if fmt == "graphml":
        buffer = io.BytesIO()
        nx.write_graphml(_xml_safe(graph), buffer, encoding="utf-8")
        return buffer.getvalue().decode("utf-8")
    if fmt == "mermaid":
        return _mermaid(graph)
    raise ValueError(f"unknown graph format {fmt!r}; use json, graphml or mermaid")


def _xml_safe(graph: nx.DiGraph) -> nx.DiGraph:
    def clean(value: object) -> object:
        return xml_text(value) if isinstance(value, str) else value

    safe = nx.DiGraph(**{k: clean(v) for k, v in graph.graph.items()})
    for node, data in graph.nodes(data=True):
        safe.add_node(clean(node), **{k: clean(v) for k, v in data.items()})
    for a, b, data in graph.edges(data=True):
        safe.add_edge(clean(a), clean(b), **{k: clean(v) for k, v in data.items()})
    return safe


def load(text: str, fmt: Literal["json", "graphml"]) -> nx.DiGraph:
    if fmt == "json":
        return nx.node_link_graph(json.loads(text), edges="edges", directed=True)
    return nx.read_graphml(io.BytesIO(text.encode("utf-8")))


_SHAPES = {
    "observation": ('(["', '"])'),
    "reasoning": ('("', '")'),
    "action": ('["', '"]'),
    "outcome": ('{{"', '"}}'),
    "parse_error": ('[/"', '"/]'),
    "backend_error": ('[/"', '"/]'),
    "low_confidence": ('[/"', '"/]'),
    "damaged": ('[/"', '"/]'),
    "counterfactual": ('[["', '"]]'),
    "end": ('(("', '"))'),
}


def _mermaid(graph: nx.DiGraph) -> str:
    ids = {node: f"n{i}" for i, node in enumerate(graph.nodes)}
    lines = ["flowchart TD"]
    flagged = []  # reasoning that named something else than what was at the executed point (agent.consistency)
    for node, data in graph.nodes(data=True):
        left, right = _SHAPES.get(data.get("kind", ""), ('["', '"]'))
        label = _mermaid_text(str(data.get("label", node)))
        if data.get("consistency") == "mismatch":
            flagged.append(ids[node])
            label = "⚠ mismatch: " + label  # said in the text too: a renderer without styles still shows it
        lines.append(f"  {ids[node]}{left}{label}{right}")
    for a, b, data in graph.edges(data=True):
        kind = data.get("kind", "")
        dashed = kind in ("retry", "branch", "counterfactual")
        arrow = "-.->" if dashed else "-->"
        lines.append(f"  {ids[a]} {arrow}|{kind}| {ids[b]}" if dashed else f"  {ids[a]} {arrow} {ids[b]}")
    if flagged:
        lines += ["  classDef mismatch stroke:#c62828,stroke-width:3px", f"  class {','.join(flagged)} mismatch"]
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    """A label as text inside Mermaid's quotes: labels come from pages and models, so no line break (a new
    statement: a click handler), quote (the end of the label) or HTML tag gets through; entity codes show them."""
    text = " ".join(text.split())  # every kind of line break and space, \r and \u2028 among them
    text = text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    # the export goes to a terminal as often as to a file: no escape sequence (ESC, CSI) reaches it as such
    return CONTROL.sub(lambda m: f"#{ord(m.group())};", text)


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _step_action_label(step: StepRecord) -> str:
    """What the step did, or for a step a gate held back (skipped, stopped) what was proposed, said so."""
    if step.action is None and step.gate is not None and step.gate.model_action is not None:
        return f"{step.gate.decision}: {_action_label(step.gate.model_action)}"
    return _action_label(step.action)


def _action_label(action: Action | None) -> str:
    if action is None:  # an invalid action or a failed one: nothing was decided to act on
        return "?"
    coordinate = getattr(action, "coordinate", None)  # a point action; a scroll may have one
    if coordinate is not None:
        x, y = coordinate
        return f"{action.action} ({x:.0f}, {y:.0f})"
    for key in ("text", "keys", "status", "url", "pixels"):
        value = getattr(action, key, None)
        if value is not None:
            return _short(f"{action.action} {value}", 60)
    return action.action
