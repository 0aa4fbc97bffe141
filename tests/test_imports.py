"""The import graph: packages import in one direction, nothing imports in a circle, light modules stay light.

The graph is built statically (every module is parsed, not imported) so the test needs no browser, model or
optional dependency, and it sees imports inside functions too: a cycle hidden in a function body is still a
cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cli", "evals", "agent", "tools", "tracer", "replays", "sites")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an imported name lives in: the longest known prefix, or None for outside code."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _imports(module: str, path: Path) -> set[str]:
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # `from . import x` inside a package's __init__ is relative to the package itself.
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            # `from pkg import mod` imports the submodule pkg.mod when there is one.
            names.update(f"{prefix}.{alias.name}" for alias in node.names if alias.name != "*")
    resolved = {_resolve(name) for name in names}
    return {target for target in resolved if target is not None and target != module}


def _is_cli(module: str) -> bool:
    # The CLI wires every package together and sits on top of them; it is allowed to import anything.
    return module.split(".")[0] == "cli"


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def test_the_graph_sees_the_packages_and_their_imports() -> None:
    # Guards the walk itself: if it found nothing, every other test here would pass vacuously.
    assert {"agent.task", "tracer.store", "replays.viewer.app", "tools.browser"} <= set(GRAPH)
    assert "tracer.schema" in GRAPH["tracer.store"]
    assert "agent.loop" in GRAPH["cli.app"]


def test_relative_and_function_level_imports_are_resolved(tmp_path: Path) -> None:
    module = tmp_path / "app.py"
    module.write_text(
        "from . import safe\nfrom ..launch import start\n\ndef later():\n    import tracer.store\n", encoding="utf-8"
    )
    assert _imports("replays.viewer.app", module) == {"replays.viewer", "replays.viewer.safe", "replays.launch", "tracer.store"}


@pytest.mark.parametrize("package", ["tools", "tracer"])
def test_lower_packages_import_neither_agent_nor_replays(package: str) -> None:
    offending = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if module.split(".")[0] == package
        for target in targets
        if target.split(".")[0] in ("agent", "replays")
    )
    assert not offending, f"{package} must not import agent or replays: {offending}"


def test_agent_does_not_import_replays() -> None:
    offending = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if module.split(".")[0] == "agent"
        for target in targets
        if target.split(".")[0] == "replays"
    )
    assert not offending, f"agent must not import replays (replays drives agent, not the other way): {offending}"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None. Iterative depth-first search with three colours."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for start in sorted(graph):
        if colour[start] != white:
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        colour[start] = grey
        while stack:
            node, pending = stack[-1]
            if not pending:
                stack.pop()
                path.pop()
                colour[node] = black
                continue
            nxt = pending.pop(0)
            if colour.get(nxt, black) == grey:
                return path[path.index(nxt) :] + [nxt]
            if colour.get(nxt) == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append((nxt, sorted(graph[nxt])))
    return None


def test_find_cycle_reports_the_path() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_nothing_imports_the_cli() -> None:
    # The CLI sits on top of every package; a module importing it would make the CLI's imports its own.
    importing_cli = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if not _is_cli(module)
        for target in targets
        if _is_cli(target)
    )
    assert not importing_cli, f"nothing may import the CLI: {importing_cli}"


def test_only_the_cli_imports_evals() -> None:
    # evals (suites, parallel episodes) runs tasks through agent and reads tracer; it sits just below the CLI.
    offending = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if module.split(".")[0] not in ("cli", "evals")
        for target in targets
        if target.split(".")[0] == "evals"
    )
    assert not offending, f"only the CLI may import evals: {offending}"
    assert "evals.runner" in GRAPH and "agent.loop" in GRAPH["evals.episode"]


def test_no_module_import_cycles() -> None:
    # Every module, the CLI included, and imports inside functions too.
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_package_import_cycles() -> None:
    # Packages import one way (replays -> agent -> tracer -> tools); only the CLI, on top, may import them all.
    packages: dict[str, set[str]] = {package: set() for package in PACKAGES}
    for module, targets in GRAPH.items():
        if _is_cli(module):
            continue
        packages[module.split(".")[0]] |= {target.split(".")[0] for target in targets} - {module.split(".")[0]}
    cycle = _find_cycle(packages)
    assert cycle is None, "package import cycle: " + " -> ".join(cycle or [])


def _loaded_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_importing_the_task_model_loads_no_browser_http_or_model_code() -> None:
    loaded = _loaded_after("import agent.task")
    heavy = {"playwright", "httpx", "torch", "transformers", "fastapi", "uvicorn"}
    assert not (_top_level(loaded) & heavy), sorted(_top_level(loaded) & heavy)
    assert "agent.loop" not in loaded and "tools.browser" not in loaded  # the task's settings live in tools.views
    assert "agent.task" in loaded


def test_the_agent_package_exports_stay_reachable_lazily() -> None:
    loaded = _loaded_after("import agent\nassert agent.Task is not None and callable(agent.load_task)")
    assert "agent.loop" not in loaded
    loaded = _loaded_after("import agent\nassert callable(agent.run_task)")
    assert "agent.loop" in loaded


def test_the_viewer_and_its_app_load_no_torch() -> None:
    loaded = _loaded_after(
        "import tempfile\nfrom pathlib import Path\n"
        "import replays.viewer\n"
        "from replays.viewer.app import create_viewer\n"
        "create_viewer(Path(tempfile.mkdtemp()))"
    )
    assert "torch" not in _top_level(loaded)
    assert "transformers" not in _top_level(loaded)
    assert "replays.viewer.app" in loaded


def test_production_code_does_not_import_the_tiny_test_model() -> None:
    # agent/tiny_model.py builds a random-weight model for tests and benchmarks; only `glassbox dev tiny-model`
    # (the CLI) reaches it. What a real backend needs from it lives in agent/backends/processor.py.
    offending = sorted(module for module, targets in GRAPH.items() if "agent.tiny_model" in targets and not _is_cli(module))
    assert not offending, f"production modules import the test model builder agent.tiny_model: {offending}"


def test_the_viewer_starts_runs_through_the_python_api_not_the_cli() -> None:
    # The viewer's Replay/Resume buttons go through replays.launch (a spawned process calling replays.replay),
    # never a `python -m cli ...` command line with a hidden flag.
    assert "replays.launch" in GRAPH["replays.viewer.app"]
    assert "replays.replay" in GRAPH["replays.launch"]
    viewer = ast.parse((ROOT / "replays/viewer/app.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(viewer) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(viewer) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"subprocess", "cli", "cli.app"}
    hidden = subprocess.run(
        [sys.executable, "-m", "cli", "replay", "some-run", "--new-run-id", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert hidden.returncode == 2 and "--new-run-id" in hidden.stderr, hidden.stderr


def test_a_launch_that_cannot_start_exits_2_and_says_why(tmp_path: Path) -> None:
    from replays.launch import Launch, start

    errors = tmp_path / "launch.stderr"
    process = start(Launch(runs_dir=tmp_path, run_id="no-such-run", new_run_id="new-run"), errors=errors)
    process.join(timeout=120)
    assert process.exitcode == 2
    said = errors.read_text(encoding="utf-8")
    assert "error: no run 'no-such-run'" in said, said
    assert not (tmp_path / "new-run").exists()
