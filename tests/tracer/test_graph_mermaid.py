"""The exports of a decision graph: its labels come from pages and models, so in Mermaid none can end its label, start
a statement of its own (a click handler) or carry an HTML tag, and in no format does a control character break the
file or reach a terminal as such."""

from __future__ import annotations

import networkx as nx

from tracer.graph import export

HOSTILE = [
    'ok")\n  click n0 href "javascript:alert(1)"\n  n9("x',
    "a\rclick n0 call alert()",
    "b\u2028click n0 call alert()",
    "<img src=x onerror=alert(1)> #quot; %%{init: {}}%%",
    "\x1b]0;pwned\x07\x1b[2J\x9b31m",  # a terminal's title, a cleared screen, a C1 CSI
]


def test_hostile_labels_stay_text_inside_their_node() -> None:
    graph = nx.DiGraph()
    for i, label in enumerate(HOSTILE):
        graph.add_node(f"s{i}", kind="reasoning", label=label)
    graph.add_edge("s0", "s1", kind="next")
    text = export(graph, "mermaid")
    lines = text.splitlines()
    assert lines[0] == "flowchart TD" and len(lines) == 1 + len(HOSTILE) + 1  # one line per node and edge
    assert not any(line.strip().startswith(("click", "n9", "%%")) for line in lines)
    assert "<" not in text and ">" not in text.replace("-->", "")
    for i, line in enumerate(lines[1 : 1 + len(HOSTILE)]):
        assert line.startswith(f"  n{i}") and line.count('"') == 2  # the label's own quotes only
    assert "#quot;" in lines[1] and "#lt;img" in lines[4] and "#35;quot;" in lines[4]  # shown as typed
    assert not any(0 <= ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in text.replace("\n", ""))  # none for a terminal
    assert "#27;]0;pwned#7;#27;[2J#155;31m" in lines[5]


def test_graphml_and_json_of_control_characters_parse_back_and_hold_none_raw() -> None:
    """XML cannot hold most control characters (a GraphML file with one is unreadable) and json leaves C1 controls
    and lone surrogates raw: a model's or a page's text must neither break the file nor reach a terminal as such."""
    from tracer.graph import load

    label = "x\x1b[2J\x9b31m\x00y\ud800 中文"
    graph = nx.DiGraph(run_id="r\x07")
    graph.add_node("a", kind="reasoning", label=label)
    graph.add_node("b", kind="end", label="ok")
    graph.add_edge("a", "b", kind="end")
    for fmt in ("graphml", "json"):
        text = export(graph, fmt)  # type: ignore[arg-type]
        assert not any(0 <= ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000 for c in text.replace("\n", ""))
        text.encode("utf-8")  # no lone surrogate left to fail a write
        back = load(text, fmt)  # type: ignore[arg-type]
        assert set(back.nodes) == {"a", "b"} and "中文" in back.nodes["a"]["label"]
    assert load(export(graph, "json"), "json").nodes["a"]["label"] == label  # json: the same data, escaped
    assert load(export(graph, "graphml"), "graphml").nodes["a"]["label"] == "x\\x1b[2J\\x9b31m\\x00y\\ud800 中文"  # shown as text


def test_a_mismatch_is_marked_in_mermaid_and_an_unknown_confidence_is_no_number(tmp_path, monkeypatch) -> None:
    """The consistency verdict reaches the Mermaid chart (text and style); JSON says nothing of a confidence no step
    recorded, rather than a made-up -1."""
    import json

    from tests.replays.label_runs import SECRET, SECRET_ENV, script_run
    from tracer.graph import run_graph
    from tracer.schema import ConsistencyCheck
    from tracer.store import read_run, read_steps

    monkeypatch.setenv(SECRET_ENV, SECRET)
    run_dir = script_run(tmp_path)  # a script run on the fake executor: no step has a confidence
    steps = read_steps(run_dir)
    check = ConsistencyCheck(verdict="mismatch", claimed=["Sign in"], observed={"element": "Register"}, reason="test")
    steps[0] = steps[0].model_copy(update={"consistency": check})
    steps[1] = steps[1].model_copy(update={"confidence": 0.8})
    graph = run_graph(read_run(run_dir), steps)
    chart = export(graph, "mermaid")
    flagged = [line for line in chart.splitlines() if "⚠ mismatch: " in line]
    assert len(flagged) == 1
    node_id = flagged[0].split("(")[0].strip()
    assert f"  class {node_id} mismatch" in chart.splitlines()
    nodes = {n["id"]: n for n in json.loads(export(graph, "json"))["nodes"]}
    assert "confidence" not in nodes["think:0"] and nodes["think:1"]["confidence"] == 0.8
