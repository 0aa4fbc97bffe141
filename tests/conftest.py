"""Shared fixtures: a real shop on 127.0.0.1 (OS-assigned port) and real headless Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sites.shop import ShopServer
from tools.chromium import ChromiumNotFound, find_chromium

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "tasks"

# A test is slow when it starts Chromium, a shop, a model or a desktop: it then uses one of these fixtures, or its
# module says so with `pytestmark = pytest.mark.slow`. `pytest -m "not slow"` is the fast inner loop.
SLOW_FIXTURES = {"chromium", "browser", "shop", "page", "model_dir", "tiny_model", "plain", "fast", "backend",
                 "publish_run", "original", "recorded", "signed_in"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def require_chromium() -> None:
    """Skip (saying why) when Chromium is missing on a developer machine; fail in CI, where it must exist."""
    try:
        find_chromium()
    except ChromiumNotFound as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"needs Chromium: {exc}")


@pytest.fixture
def chromium() -> None:
    require_chromium()


@pytest.fixture
def shop():
    with ShopServer() as server:
        yield server


@pytest.fixture
def browser(chromium, tmp_path):
    from tools.browser import BrowserExecutor, BrowserSettings

    files = {"lamp": TASKS / "fixtures" / "desk_lamp.png"}
    with BrowserExecutor(BrowserSettings(), files=files, secrets={"password": "s3cr3t-value"},
                         allowed_origins=["http://127.0.0.1:1"]) as executor:
        yield executor
