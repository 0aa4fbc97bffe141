"""The Mermaid export of a decision graph: its labels come from pages and models, so none can end its label, start
a statement of its own (a click handler) or carry an HTML tag."""

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
