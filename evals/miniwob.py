"""MiniWoB++ as a built-in suite: task files built from the ``miniwob`` package's own pages.

Each task is a plain Glassbox task file (nothing here is special to the loop), run on the suite's seeds: a
``file:`` start page inside the installed package, a setup that seeds the page's random generator
(``Math.seedrandom({seed})``: each episode's seed), lifts the
episode's 10 s limit (a model's step takes longer; the raw reward does not decay with time) and starts it,
the page's instruction kept as ``{utterance}`` (the goal), and a check that reads the page's raw reward::

    folder = build_suite(out, tasks=["click-button", "enter-text"], seeds=[0, 1, 2])
    suite = load_suite(folder / "suite.yaml")

A few tasks come with a demonstration (the script policy) written for any seed: ``DEMOS``. The package's
pages are found without importing it (importing ``miniwob`` pulls in gymnasium and selenium).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tools.errors import UsageError

MAX_SEED = 2**31 - 1
_TASK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,80}$")


class MiniwobMissing(UsageError, ValueError):
    """The ``miniwob`` package is not installed (``pip install miniwob`` or ``pip install -e .[miniwob]``)."""


class Demo(BaseModel):
    """A demonstration for one MiniWoB++ task: values read from the page, then the script that uses them."""

    model_config = ConfigDict(extra="forbid")

    values: dict[str, str] = Field(default_factory=dict)  # save_as name -> JavaScript expression
    script: list[dict[str, Any]]


def _quoted(n: int = 1) -> str:
    # The n-th "quoted" word of the instruction (MiniWoB++ quotes what to click or type).
    return f'core.getUtterance().match(/"([^"]+)"/g)[{n - 1}].slice(1, -1)'


DEMOS: dict[str, Demo] = {
    "click-test": Demo(script=[{"action": "left_click", "target": {"selector": "#subbtn"}}]),
    "focus-text": Demo(script=[{"action": "left_click", "target": {"selector": "#tt"}}]),
    "click-button": Demo(
        values={"button": _quoted()},
        script=[{"action": "left_click", "target": {"selector": "#area button", "text": "{button}"}}],
    ),
    "click-link": Demo(
        values={"link": _quoted()},
        script=[{"action": "left_click", "target": {"selector": "#area .alink", "text": "{link}"}}],
    ),
    "enter-text": Demo(
        values={"text": _quoted()},
        script=[
            {"action": "left_click", "target": {"selector": "#tt"}},
            {"action": "type", "text": "{text}"},
            {"action": "left_click", "target": {"selector": "#subbtn"}},
        ],
    ),
    "login-user": Demo(
        values={"username": _quoted(1), "password": _quoted(2)},
        script=[
            {"action": "left_click", "target": {"selector": "#username"}},
            {"action": "type", "text": "{username}"},
            {"action": "left_click", "target": {"selector": "#password"}},
            {"action": "type", "text": "{password}"},
            {"action": "left_click", "target": {"selector": "#subbtn"}},
        ],
    ),
    "enter-password": Demo(
        values={"password": _quoted()},
        script=[
            {"action": "left_click", "target": {"selector": "#password"}},
            {"action": "type", "text": "{password}"},
            {"action": "left_click", "target": {"selector": "#verify"}},
            {"action": "type", "text": "{password}"},
            {"action": "left_click", "target": {"selector": "#subbtn"}},
        ],
    ),
}


def pages_folder() -> Path:
    """The installed package's ``html`` folder (``miniwob/`` task pages and ``core/`` scripts)."""
    spec = importlib.util.find_spec("miniwob")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        html = Path(location) / "html"
        if (html / "miniwob").is_dir():
            return html.resolve()
    raise MiniwobMissing("MiniWoB++ needs the miniwob package's task pages: pip install miniwob (or .[miniwob])")


def available_tasks() -> list[str]:
    """Every single-page MiniWoB++ task the package ships (the flight-booking ones need a server: left out)."""
    return sorted(p.stem for p in (pages_folder() / "miniwob").glob("*.html") if _TASK_NAME.match(p.stem))


def task_text(name: str, *, html: Path, with_demo: bool) -> str:
    """The task file (YAML) of ``name``, for any seed (``{seed}``); with the demonstration when there is one."""
    demo = DEMOS.get(name) if with_demo else None
    page = html / "miniwob" / f"{name}.html"
    setup: list[dict[str, Any]] = [
        {"js": "Math.seedrandom({seed}); core.EPISODE_MAX_TIME = 3600000; core.startEpisodeReal(); true"},
        {"wait_for": {"js": "WOB_TASK_READY"}},
        {"js": "core.getUtterance()", "save_as": "utterance"},
    ]
    setup += [{"js": expression, "save_as": value} for value, expression in (demo.values.items() if demo else [])]
    task: dict[str, Any] = {
        "name": f"miniwob.{name}",
        "goal": "{utterance}",
        "target": {"start_url": page.as_uri()},
        "allowed_roots": [str(html)],
        "browser": {"viewport": [400, 300]},  # the task is 160 x 210 at the top left, the reward panel beside it
        "limits": {"max_steps": 15, "time_budget_s": 300},
        "setup": setup,
        "checks": [
            {
                "type": "js",
                "description": "MiniWoB++ episode done with a positive raw reward",
                "expression": "WOB_DONE_GLOBAL && WOB_RAW_REWARD_GLOBAL > 0 ? WOB_RAW_REWARD_GLOBAL : false",
            }
        ],
    }
    if demo is not None:
        task["script"] = [*demo.script, {"action": "terminate", "status": "success"}]
    return yaml.safe_dump(task, sort_keys=False, allow_unicode=True, width=1000)


def build_suite(folder: Path, *, tasks: list[str] | None, seeds: list[int], repeats: int = 1, demos: bool = True) -> Path:
    """Write one task file per task and a ``suite.yaml`` running them on ``seeds`` into ``folder``; return the
    suite's path.

    ``tasks`` None: every task with a demonstration (``demos``) or every task the package ships. An unknown task
    name or a seed out of range is a ValueError naming it.
    """
    html = pages_folder()
    known = available_tasks()
    chosen = list(tasks) if tasks else (sorted(DEMOS) if demos else known)
    unknown = [t for t in chosen if t not in known]
    if unknown:
        raise ValueError(f"unknown MiniWoB++ task(s): {', '.join(unknown[:10])} (the package has {len(known)}, e.g. click-test)")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad or not seeds:
        raise ValueError(f"seeds must be 0 to {MAX_SEED}: {bad}" if bad else "give at least one seed")
    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for name in chosen:
        file = folder / f"{name}.yaml"
        file.write_text(task_text(name, html=html, with_demo=demos), encoding="utf-8")
        names.append(file.name)
    suite = {"name": "miniwob", "tasks": names, "seeds": list(seeds), "repeats": repeats}
    path = folder / "suite.yaml"
    path.write_text(json.dumps(suite, indent=1) + "\n", encoding="utf-8")  # JSON is YAML: no quoting surprises
    return path
