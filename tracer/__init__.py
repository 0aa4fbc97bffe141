"""What is recorded and how: run and step records, the run folder, reading runs back."""

from tracer.schema import RunRecord, RunStatus, StepErrorKind, StepRecord, StepTimings
from tracer.store import RunStore, RunWriter, read_run, read_steps

__all__ = [
    "RunRecord",
    "RunStatus",
    "StepErrorKind",
    "StepRecord",
    "StepTimings",
    "RunStore",
    "RunWriter",
    "read_run",
    "read_steps",
]
