"""An evaluation suite: which task files, seeds, repeats, policy settings and limits; expanded into episodes.

A suite is a YAML file (read as untrusted input, with the task reader's limits) or a folder of task files::

    name: shop-smoke
    tasks: [../tasks/publish_product.yaml, "more/*.yaml"]   # files or globs, relative to this file
    seeds: [0, 1, 2]              # a bundled site's layout, {seed} in any task (omitted: each task's own)
    repeats: 2
    policy: {name: openai, model: Qwen3-VL-8B-Thinking, base_url: http://127.0.0.1:8000/v1}
    limits: {max_steps: 40, timeout_s: 600, retries: 2, workers: 4}

Usage::

    suite = load_suite(Path("suites/shop.yaml"))      # raises SuiteError naming the file, field, line, problem
    for episode in suite.episodes(): ...

Every task file is loaded (and so validated) here, before any episode starts: a broken task is a usage error,
not a hundred failed episodes.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.task import PolicySettings, SiteTarget, Task, TaskError, load_task
from agent.task_yaml import YamlProblem, dotted, line_prefix, load_yaml_file
from tools.errors import UsageError
from tracer.evals import Episode

MAX_EPISODES = 100_000
MAX_TASK_FILES = 10_000
TASK_SUFFIXES = (".yaml", ".yml")
_GLOB_CHARS = re.compile(r"[*?\[]")


def parse_seeds(text: str, what: str = "") -> list[int]:
    """``0-4,9`` -> [0, 1, 2, 3, 4, 9]; ValueError naming ``what`` (when given: a suite's error already names
    its field) and the part that is not a seed or a range."""
    where = f"{what}: " if what else ""
    found: dict[int, None] = {}
    for part in (p.strip() for p in text.split(",")):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"{where}{part!r} is not a seed or a range like 0-4")
        low, high = int(first), int(last) if dash else int(first)
        if high < low or high - low >= 10_000 or len(found) > 10_000:
            raise ValueError(f"{where}{part!r} is not a range of at most 10,000 seeds, low to high")
        found.update(dict.fromkeys(range(low, high + 1)))
    return list(found)


class SuiteError(UsageError, ValueError):
    """A suite that cannot be used; ``str()`` names the file, and each problem its field and line."""

    def __init__(self, path: Path | None, problems: list[str]) -> None:
        self.path, self.problems = path, problems
        where = str(path) if path else "suite"
        super().__init__(f"{where}: " + ("\n  " + "\n  ".join(problems) if len(problems) > 1 else problems[0]))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class SuiteLimits(_Strict):
    """How each episode is bounded and how many run at once."""

    max_steps: int | None = Field(default=None, ge=1, le=1000)  # overrides each task's limit when set
    timeout_s: float = Field(default=900.0, gt=0, le=86400)  # per episode attempt; the worker is killed past it
    retries: int = Field(default=2, ge=0, le=10)  # extra attempts after a harness failure (never a task failure)
    workers: int = Field(default=1, ge=1, le=256)
    gpus_per_episode: float | None = Field(default=None, ge=0, le=64)  # Ray; None: 1 for a local model, else 0

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("gpus_per_episode", mode="before")
    @classmethod
    def _gpus(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class SuiteFile(_Strict):
    """The YAML as written."""

    name: str = Field(min_length=1, max_length=200)
    tasks: list[str] = Field(min_length=1, max_length=MAX_TASK_FILES)
    seeds: list[int] | None = Field(default=None, min_length=1, max_length=10_000)
    repeats: int = Field(default=1, ge=1, le=1000)
    policy: dict[str, Any] = Field(default_factory=dict)  # PolicySettings fields (name, model, base_url, ...)
    limits: SuiteLimits = Field(default_factory=SuiteLimits)

    @field_validator("tasks")
    @classmethod
    def _entries(cls, v: list[str]) -> list[str]:
        for entry in v:
            if not entry.strip():
                raise ValueError("a task entry is empty")
            if any(ord(c) < 32 for c in entry):
                raise ValueError(f"{entry!r} holds a control character")
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_ranges(cls, v: Any) -> Any:
        # `seeds: 0-9` or `seeds: 0-4,9`, as on the command line; a single seed as itself.
        if isinstance(v, str):
            return parse_seeds(v)
        return [v] if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        for seed in v:
            if not 0 <= seed <= 2**31 - 1:
                raise ValueError(f"seed {seed} is out of range (0 to {2**31 - 1})")
        if len(set(v)) != len(v):
            raise ValueError("seeds repeat; list each seed once (use 'repeats' to run one more than once)")
        return v


class Suite(BaseModel):
    """A suite ready to run: its task files loaded and validated."""

    name: str
    source: Path  # the suite file or folder
    task_files: list[Path]  # absolute, in suite order
    task_names: dict[str, str]  # task file -> task name
    site_tasks: list[str]  # task files whose target is a bundled site (seeds are their layouts)
    seeds: list[int] | None
    repeats: int
    policy: dict[str, Any]  # the overrides given (validated against PolicySettings)
    limits: SuiteLimits
    allow_programs: bool = False

    def policy_name(self, task: Task) -> str:
        return str(self.policy.get("name") or task.policy.name)

    def episodes(self) -> list[Episode]:
        slugs = _unique_slugs(self.task_files, self.source if self.source.is_dir() else self.source.parent)
        result: list[Episode] = []
        for task_file in self.task_files:
            seeds: list[int | None] = list(self.seeds) if self.seeds is not None else [None]
            for seed in seeds:
                for repeat in range(self.repeats):
                    seed_part = f"s{seed}" if seed is not None else "s-"
                    result.append(
                        Episode(
                            id=f"{slugs[task_file]}.{seed_part}.r{repeat}",
                            task_file=task_file,
                            task_name=self.task_names[str(task_file)],
                            seed=seed,
                            layout_seed=seed if str(task_file) in self.site_tasks else None,
                            repeat=repeat,
                        )
                    )
        return result

    def plan_digest(self) -> str:
        """A fingerprint of what the suite runs: an eval resumed with another suite is refused."""
        parts = [self.model_dump_json(include={"policy", "seeds", "repeats"})]
        parts += [e.model_dump_json() for e in self.episodes()]
        parts.append(str(self.limits.max_steps))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def load_suite(path: Path, *, allow_programs: bool = False) -> Suite:
    """A suite YAML, or a folder whose ``*.yaml`` / ``*.yml`` files are the tasks (task defaults, one repeat)."""
    path = Path(path)
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError) as exc:
        raise SuiteError(path, [f"cannot read: {exc}"]) from None
    if is_dir:
        in_folder = sorted(p for p in path.rglob("*") if p.suffix in TASK_SUFFIXES and _is_file(p))
        if not in_folder:
            raise SuiteError(path, ["the folder holds no task files (*.yaml, *.yml)"])
        if len(in_folder) > MAX_TASK_FILES:
            raise SuiteError(
                path, [f"the folder holds {len(in_folder):,} task files; a suite may have at most {MAX_TASK_FILES:,}"]
            )
        spec = SuiteFile(name=path.resolve().name or "suite", tasks=[str(p) for p in in_folder])
        return _build(path, spec, [p.resolve() for p in in_folder], allow_programs=allow_programs)
    try:
        node, data = load_yaml_file(path)
    except YamlProblem as exc:
        raise SuiteError(path, [exc.describe()]) from None
    if not isinstance(data, dict):
        raise SuiteError(path, ["line 1: a suite file must be a mapping of fields (name, tasks, seeds, repeats, policy, limits)"])
    try:
        spec = SuiteFile.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(path, [_problem(err, node) for err in exc.errors()]) from None
    problems: list[str] = []
    if spec.policy:
        try:
            PolicySettings.model_validate(spec.policy)
        except ValidationError as exc:
            problems += [_problem({**err, "loc": ("policy", *err["loc"])}, node) for err in exc.errors()]
    files: list[Path] = []
    base = path.parent
    for i, entry in enumerate(spec.tasks):
        found, problem = _expand(base, entry)
        if problem:
            problems.append(f"{line_prefix(node, ('tasks', i))}tasks[{i}]: {problem}")
        files += [f for f in found if f not in files]
    if problems:
        raise SuiteError(path, problems)
    return _build(path, spec, files, allow_programs=allow_programs, node=node)


def _build(path: Path, spec: SuiteFile, files: list[Path], *, allow_programs: bool, node: yaml.Node | None = None) -> Suite:
    problems: list[str] = []
    names: dict[str, str] = {}
    site_tasks: list[str] = []
    for file in files:
        try:
            task = load_task(file, allow_programs=True if allow_programs else None)
        except TaskError as exc:
            problems.append(f"task {exc}")
            continue
        names[str(file)] = task.name
        if isinstance(task.target, SiteTarget):
            site_tasks.append(str(file))
        policy = spec.policy.get("name") or task.policy.name
        if policy == "script" and not task.script:
            problems.append(f"task {file}: has no 'script:' section, so the script policy cannot run it")
    count = len(files) * len(spec.seeds or [None]) * spec.repeats
    if count > MAX_EPISODES:
        problems.append(f"the suite expands to {count:,} episodes; at most {MAX_EPISODES:,} are allowed")
    if problems:
        raise SuiteError(path, problems)
    suite = Suite(
        name=spec.name,
        source=path.resolve(),
        task_files=files,
        task_names=names,
        site_tasks=site_tasks,
        seeds=spec.seeds,
        repeats=spec.repeats,
        policy=dict(spec.policy),
        limits=spec.limits,
        allow_programs=allow_programs,
    )
    ids = [e.id for e in suite.episodes()]
    if len(set(ids)) != len(ids):  # cannot happen with _unique_slugs; a clear error if it ever does
        raise SuiteError(path, ["two episodes would share an id"])
    return suite


def _expand(base: Path, entry: str) -> tuple[list[Path], str | None]:
    """The task files an entry names: a path, or a glob relative to the suite's folder."""
    if _GLOB_CHARS.search(entry):
        if os.path.isabs(entry):
            return [], f"{entry!r}: a glob must be relative to the suite's folder"
        parts = entry.replace("\\", "/").split("/")
        if ".." in parts:
            return [], f"{entry!r}: a glob stays inside the suite's folder (no '..'; name a file outside by its path)"
        if parts.count("**") > 1:  # each more '**' walks the tree again under every folder the one before found
            return [], f"{entry!r}: a glob may hold '**' once"
        found: list[Path] = []
        try:
            for p in base.glob(entry):
                if p.suffix in TASK_SUFFIXES and _is_file(p):
                    found.append(p.resolve())
                    if len(found) > MAX_TASK_FILES:  # stop walking: the answer is already no
                        return [], f"{entry!r} matches more than {MAX_TASK_FILES:,} files; a suite may have at most that"
        except (ValueError, OSError, NotImplementedError) as exc:
            return [], f"{entry!r} is not a usable glob: {exc}"
        if not found:
            return [], f"{entry!r} matches no task file (*.yaml, *.yml) under {base.resolve()}"
        return sorted(found), None
    file = (base / entry).resolve()
    if not _is_file(file):
        return [], f"no task file {file}"
    return [file], None


def _unique_slugs(files: list[Path], base: Path) -> dict[Path, str]:
    """A readable id part per task file (its path under the suite's folder), made unique with a short hash."""
    raw: dict[Path, str] = {}
    for file in files:
        try:
            shown = file.relative_to(base.resolve()).with_suffix("").as_posix()
        except ValueError:
            shown = file.stem
        raw[file] = re.sub(r"[^A-Za-z0-9]+", "-", shown).strip("-")[:60] or "task"
    counts: dict[str, int] = {}
    for slug in raw.values():
        counts[slug] = counts.get(slug, 0) + 1
    return {f: (s if counts[s] == 1 else f"{s}-{hashlib.sha1(str(f).encode()).hexdigest()[:6]}") for f, s in raw.items()}


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _problem(err: Any, node: yaml.Node | None) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p[:1].isupper() or "[" in p)))
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        message = "required field is missing"
    elif err["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{line_prefix(node, loc)}{_dotted(loc)}: {message}"


def _dotted(loc: tuple[Any, ...]) -> str:
    return dotted(loc, "suite")
