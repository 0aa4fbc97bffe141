"""Shared fixtures: a real shop on 127.0.0.1 (OS-assigned port) and real headless Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sites.shop import ShopServer
from tools.chromium import ChromiumNotFound, find_chromium

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "tasks"

# Markers for a fast inner loop (`pytest -m "not slow"`): a test that starts Chromium or a site is `browser`, one
# that loads a model is `model`, one that needs Xvfb is `desktop` (marked where it calls require_xvfb); all of
# them are `slow`. Fixtures say most of it, so new tests are marked without remembering to.
BROWSER_FIXTURES = {
    "chromium",
    "browser",
    "shop",
    "page",
    "pages",
    "signed_in",
    "publish_run",
    "original",
    "recorded",
    "chromium_module",
    "chromium_rebinding",
}
MODEL_FIXTURES = {"model_dir", "tiny_model", "plain", "fast", "backend"}
MODEL_MODULES = {"test_attention", "test_fast_decoding", "test_qwen_local"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        if fixtures & MODEL_FIXTURES or item.module is not None and item.module.__name__.split(".")[-1] in MODEL_MODULES:
            item.add_marker(pytest.mark.model)
        if any(item.get_closest_marker(m) for m in ("browser", "model", "desktop")):
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
    with BrowserExecutor(
        BrowserSettings(), files=files, secrets={"password": "s3cr3t-value"}, allowed_origins=["http://127.0.0.1:1"]
    ) as executor:
        yield executor
