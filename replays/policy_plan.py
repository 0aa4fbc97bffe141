"""Which policy a replay-with-fallback or a resume of a recorded run hands over to, with which settings, and what
is missing to start it.

A run records its policy's settings (``run.json``: ``task.policy``, after the CLI's overrides), so a served run
is asked again of the same server and model, and a local-model run of the same model folder, without the flags
being given again. The API key of a served model is a secret and is never recorded: only the name of the
environment variable it came from is, and the key is read from that variable when the run starts::

    plan = plan_policy(run, steps)
    plan.policy, plan.base_url, plan.model, plan.missing      # "openai", "http://...", "qwen3-vl", ["api_key"]
    overrides = plan.overrides()                               # for replay(..., policy_overrides=...)

Reading the record is cheap (no task file, model or browser): the viewer asks before showing its form.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ValidationError

from agent.task import PolicySettings
from tracer.schema import RunRecord, StepRecord

# Policies that re-execute a recording rather than decide: a run by one of them hands over to the policy it recorded.
NOT_A_DECIDER = ("replay", "correction")
# What the form may ask for (never more): the server and model of a served run, and the key it needs.
Missing = Literal["base_url", "model", "api_key"]
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class PolicyPlan(BaseModel):
    """The policy that would decide, the recorded settings that say how, and what the person has to give."""

    policy: str
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None  # served runs: the variable the key is read from
    api_key_set: bool = False  # whether that variable is set in this process's environment
    missing: list[Missing] = []

    @property
    def served(self) -> bool:
        return self.policy == "openai"

    def overrides(self) -> dict[str, Any]:
        """The recorded settings to put back over the task file's own (what the CLI flags did for the original)."""
        given = {"model": self.model, "base_url": self.base_url, "api_key_env": self.api_key_env}
        return {k: v for k, v in given.items() if v is not None}

    def message(self) -> str:
        """What is missing, in words (empty when nothing is)."""
        parts = {
            "base_url": "the server's URL (the run did not record one)",
            "model": "the model (the run did not record one)",
            "api_key": f"the API key (${self.api_key_env or 'OPENAI_API_KEY'} is not set where the viewer runs; "
            "leave it empty if the server needs none)",
        }
        return "; ".join(parts[m] for m in self.missing)


def recorded_policy(run: RunRecord, steps: Sequence[StepRecord], task_policy: str | None = None) -> str:
    """The policy that decided in ``run``: its own, or for a replay the one its fallback steps recorded."""
    if run.policy not in NOT_A_DECIDER:
        return run.policy
    deciders = [s.policy for s in steps if s.policy not in NOT_A_DECIDER]
    if deciders:
        return deciders[-1]
    return task_policy or _recorded_settings(run).name


def plan_policy(
    run: RunRecord,
    steps: Sequence[StepRecord],
    *,
    policy: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    key_answered: bool = False,
    environ: Mapping[str, str] | None = None,
) -> PolicyPlan:
    """The plan for handing ``run`` over to ``policy`` (None: the one it recorded). ``base_url`` and ``model`` are
    what a person typed: they are used only where the run recorded none. ``key_answered``: the person gave a key,
    or said the server needs none. ``environ`` defaults to ``os.environ``."""
    settings = _recorded_settings(run)
    name = policy or recorded_policy(run, steps, settings.name)
    env = os.environ if environ is None else environ
    plan = PolicyPlan(policy=name, model=settings.model or model or None)
    if name == "qwen3vl" and not plan.model:
        plan.missing = ["model"]
    if name != "openai":
        return plan
    key_env = settings.api_key_env if _ENV_NAME.fullmatch(settings.api_key_env) else "OPENAI_API_KEY"
    plan.base_url = settings.base_url or base_url or None
    plan.api_key_env = key_env
    plan.api_key_set = bool(env.get(key_env))
    missing: list[Missing] = []
    if not plan.base_url:
        missing.append("base_url")
    if not plan.model:
        missing.append("model")
    if not plan.api_key_set and not key_answered:
        missing.append("api_key")
    plan.missing = missing
    return plan


def _recorded_settings(run: RunRecord) -> PolicySettings:
    """The policy settings the run recorded; the defaults when the record holds none that validate (an old or
    hand-made run folder), so a plan can still be made and the form asks for what is missing."""
    raw = run.task.get("policy") if isinstance(run.task, dict) else None
    if isinstance(raw, dict):
        try:
            return PolicySettings.model_validate(raw)
        except ValidationError:
            pass
    return PolicySettings()
