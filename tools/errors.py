"""Every exception Glassbox raises on purpose, as one tree (the way ``httpx/_exceptions.py`` lists its own).

It lives in ``tools``, the lowest package, because every package raises into it and packages import one way
only (cli -> replays -> agent -> tracer -> tools): a tree in ``agent`` could not be imported by ``tools`` or
``tracer``. It imports nothing of the project. The named errors stay in the modules that raise them (their
import paths are unchanged) and only take their parent from here; most also keep the builtin they had
(``ValueError``, ``RuntimeError``, ``FileNotFoundError``), so ``except ValueError`` still catches them.

::

    GlassboxError
    ├── UsageError              what was asked cannot work: the CLI exits 2 printing the message
    │   ├── agent.task.TaskError                  a task file that cannot be used (file, field, line, problem)
    │   │   (agent.task_yaml.YamlProblem          the YAML under it: turned into a TaskError naming the file)
    │   ├── agent.task.RecordedTaskError          a run's recorded task (run.json) that is not a valid task
    │   ├── tools.images.UnreadableImage          a screenshot that is corrupt, not an image, or larger than any screen
    │   ├── agent.policies.PolicyUnavailable      unknown policy name, missing script, bad model setting
    │   ├── agent.backends.local.ModelUnavailable the local model's files are not there
    │   ├── agent.explain.ExplainError            a step that cannot be explained
    │   ├── tools.chromium.ChromiumNotFound       no Chromium to start (install it or set GLASSBOX_CHROMIUM)
    │   ├── tracer.run_files.MissingRunFile       a file a run record names is gone from the run folder
    │   ├── tracer.run_files.DamagedSteps         damaged lines of steps.jsonl where every step is needed (replay)
    │   ├── replays.replay.ReplayError            a run that cannot be replayed or resumed
    │   ├── replays.labels.LabelError             a label that cannot be stored
    │   ├── replays.export.FeedbackExportError    labels that cannot be exported
    │   ├── replays.playwright_export.ExportError a run that cannot be exported as a script
    │   ├── cli.run_ref.RunRefError               a run reference that names no run, or several
    │   ├── evals.suite.SuiteError                a suite file that cannot be used (file, field, line, problem)
    │   ├── evals.runner.EvalUsageError           an eval that cannot start or resume (another suite's id, no Ray)
    │   └── evals.miniwob.MiniwobMissing          the miniwob package (its task pages) is not installed
    ├── StepError               one step could not be done: recorded in the step (error, error_kind), the run goes on
    │   ├── tools.actions.ActionError             a tool call that is not a valid action; fed back to the model
    │   │   └── tools.executor.BudgetSpent        the time budget ran out in the middle of an action
    │   ├── tools.navigation.PageScriptError      a setup script threw (setup turns it into SetupFailed)
    │   │   └── tools.navigation.PageTimeout      a setup script or wait did not finish within its limit
    │   └── agent.backends.base.BackendError      the model could not be asked (server down, out of memory)
    └── HarnessError            the environment could not start or broke: a clear message; a run that had started
        │                       is marked failed with the reason (the loop wraps any unexpected crash in one)
        ├── tools.xvfb.DisplayError               no X display: none given, Xvfb missing or failing
        ├── tools.browser.StartPageError          the task's start page could not be opened (refused, timed out)
        ├── agent.environment.DesktopAppError     the task's desktop app did not start or show its window
        ├── tools.capture.CaptureTimeout          the page drew no frame to capture in time (it keeps navigating)
        ├── agent.setup.SetupFailed               a step of the task's setup failed: the run fails before step 0
        └── tracer.index.UnusableIndex            the runs index is a database of another schema (it is rebuilt)

Code that catches an error by kind catches these classes, never a class name string.
"""

from __future__ import annotations


class GlassboxError(Exception):
    """The root of every error Glassbox raises on purpose."""


class UsageError(GlassboxError):
    """What the user asked for cannot work (a bad task or suite file, flag, policy name, run reference).

    Raised before anything starts where possible; the CLI prints the message and exits 2."""


class StepError(GlassboxError):
    """One step could not be done; the loop records it in the step (``error``, ``error_kind``) and goes on."""


class HarnessError(GlassboxError):
    """The environment could not start or broke under the run (browser crashed, display gone, app failed).

    A run that had started is marked failed with this message as its reason; the CLI prints it and exits 1."""
