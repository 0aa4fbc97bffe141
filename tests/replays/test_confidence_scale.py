"""The one confidence scale: bands at the documented thresholds, and every viewer page carries it."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from replays import confidence
from replays.confidence import ConfidenceBand, band
from replays.viewer import create_viewer


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ConfidenceBand.UNKNOWN),
        (math.nan, ConfidenceBand.UNKNOWN),
        (0.0, ConfidenceBand.LOW),
        (0.2, ConfidenceBand.LOW),
        (0.4999, ConfidenceBand.LOW),
        (0.5, ConfidenceBand.MEDIUM),
        (0.7999, ConfidenceBand.MEDIUM),
        (0.8, ConfidenceBand.HIGH),
        (1.0, ConfidenceBand.HIGH),
    ],
)
def test_bands_at_the_thresholds(value: float | None, expected: ConfidenceBand) -> None:
    assert band(value) is expected


def test_every_band_has_a_distinct_colour_and_a_label() -> None:
    colours = {s.colour.lower() for s in confidence.STYLES.values()}
    assert len(colours) == len(ConfidenceBand)
    assert all(s.label for s in confidence.STYLES.values())


def test_pages_carry_the_scale(tmp_path) -> None:
    client = TestClient(create_viewer(tmp_path), base_url="http://127.0.0.1")
    page = client.get("/", headers={"accept": "text/html"}).text
    assert f'data-conf-low="{confidence.LOW_BELOW}"' in page
    assert f'data-conf-high="{confidence.HIGH_FROM}"' in page
    assert "--conf-low: #D55E00" in page
    assert client.get("/static/confidence.js").status_code == 200
    assert client.get("/static/confidence.css").status_code == 200


@pytest.mark.parametrize(
    ("value", "text"), [(0.93, "0.93"), (0.5, "0.50"), (0.499, "0.499"), (0.4999, "0.499"), (0.7999, "0.799"), (0.8, "0.80")]
)
def test_numbers_never_round_across_a_threshold(value: float, text: str) -> None:
    assert confidence.number(value) == text
