"""The viewer binds its own socket: a port in use, or an address not on this machine, is a usage error that
says so (exit 2), not uvicorn's log line followed by "could not listen"."""

from __future__ import annotations

import socket

import httpx

from replays.viewer import ViewerServer
from tests.conftest import glassbox_in_process


def test_a_port_in_use_is_named_with_what_to_do(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = glassbox_in_process("view", "--runs-dir", str(tmp_path), "--port", str(port))
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, said
    assert f"port {port} is in use" in said and "--port 0" in said
    assert "Errno" not in said and "Traceback" not in said


def test_a_host_that_is_not_this_machine_is_a_usage_error(tmp_path):
    result = glassbox_in_process("view", "--runs-dir", str(tmp_path), "--host", "nosuchhost.invalid", "--port", "0")
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, said
    assert "nosuchhost.invalid is not an address of this machine" in said


def test_port_zero_serves_on_the_port_the_os_chose(tmp_path):
    with ViewerServer(tmp_path) as server:
        assert server.port not in (None, 0)
        assert httpx.get(server.url + "/", timeout=10).status_code == 200


def test_a_runs_dir_that_did_not_exist_is_said(tmp_path):
    """A mistyped --runs-dir would otherwise serve an empty viewer without a word."""
    import select
    import subprocess
    import sys

    missing = tmp_path / "runz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "view", "--runs-dir", str(missing), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        first = proc.stdout.readline() if ready else ""  # "viewer for ... on http://...": printed after the note
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert "viewer for" in first, err
    assert "did not exist; made it, empty" in " ".join(err.split()), err
