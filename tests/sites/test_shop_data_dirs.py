"""A shop's temporary data folder carries its process id, so that one left behind by a killed run or eval worker
(SIGKILL: no cleanup) is removed by the next shop that starts; a live process's folder is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from sites.shop import ShopServer


def test_a_killed_processs_shop_folder_is_removed_by_the_next_shop(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"glassbox-shop-{gone.pid}-abc123"
    (stale / "uploads").mkdir(parents=True)
    (stale / "shop.sqlite3").write_bytes(b"x")
    live = tmp_path / f"glassbox-shop-{os.getpid()}-def456"
    live.mkdir()
    unnamed = tmp_path / "glassbox-shop-olderform"  # no pid in its name: whose it is cannot be told
    unnamed.mkdir()
    with ShopServer() as shop:
        own = shop.data_dir
        assert own.name.startswith(f"glassbox-shop-{os.getpid()}-")
        assert not stale.exists() and live.is_dir() and unnamed.is_dir()
    assert not own.exists()  # its own folder goes when it stops
