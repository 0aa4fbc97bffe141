"""One confidence scale for every place that shows a step's confidence: viewer, graph, exports and terminal.

Three bands and "unknown", drawn with Okabe-Ito colours (distinguishable with the common colour-vision
deficiencies) and always with a word or number beside the colour, never colour alone. The thresholds match
the task default ``policy.min_confidence`` (0.5): below it a model policy asks or stops.
"""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

LOW_BELOW = 0.5
HIGH_FROM = 0.8


class ConfidenceBand(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    UNKNOWN = "unknown"


class BandStyle(BaseModel):
    model_config = ConfigDict(frozen=True)

    band: ConfidenceBand
    colour: str  # the band's fill; text on it stays dark or white as `ink` says
    ink: str
    label: str  # what the legend says


STYLES: dict[ConfidenceBand, BandStyle] = {
    ConfidenceBand.HIGH: BandStyle(band=ConfidenceBand.HIGH, colour="#0072B2", ink="#ffffff", label=f"high (≥ {HIGH_FROM:g})"),
    ConfidenceBand.MEDIUM: BandStyle(
        band=ConfidenceBand.MEDIUM, colour="#E69F00", ink="#000000", label=f"medium ({LOW_BELOW:g}–{HIGH_FROM:g})"
    ),
    ConfidenceBand.LOW: BandStyle(band=ConfidenceBand.LOW, colour="#D55E00", ink="#ffffff", label=f"low (< {LOW_BELOW:g})"),
    ConfidenceBand.UNKNOWN: BandStyle(band=ConfidenceBand.UNKNOWN, colour="#9E9E9E", ink="#000000", label="unknown"),
}


def band(confidence: float | None) -> ConfidenceBand:
    """The band of a confidence in [0, 1]; None (a script step, a failed parse) and NaN are unknown."""
    if confidence is None or confidence != confidence:
        return ConfidenceBand.UNKNOWN
    if confidence < LOW_BELOW:
        return ConfidenceBand.LOW
    if confidence < HIGH_FROM:
        return ConfidenceBand.MEDIUM
    return ConfidenceBand.HIGH


def style(confidence: float | None) -> BandStyle:
    return STYLES[band(confidence)]


def css_variables() -> str:
    """The scale as CSS custom properties, so stylesheets and the HTML export draw from this one source."""
    lines = [f"--conf-{s.band.value}: {s.colour}; --conf-{s.band.value}-ink: {s.ink};" for s in STYLES.values()]
    return ":root { " + " ".join(lines) + " }"


def number(confidence: float) -> str:
    """The confidence to two decimals, or three where two would round it across a threshold (0.499 is low, and
    "0.50 low" would contradict the legend)."""
    text = f"{confidence:.2f}"
    if band(float(text)) is band(confidence):
        return text
    return f"{math.floor(confidence * 1000) / 1000:.3f}"
