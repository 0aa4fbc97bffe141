"""A private X display (Xvfb) for desktop tasks and tests.

with Xvfb(1024, 768) as display:
    print(display.name)      # e.g. ":7" — pass it as DISPLAY to the app and the executor
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tools.errors import HarnessError


class DisplayError(HarnessError, RuntimeError):
    """No X display to use: none given, or Xvfb missing or failing."""


class Xvfb:
    def __init__(self, width: int = 1024, height: int = 768, depth: int = 24) -> None:
        self.width, self.height, self.depth = width, height, depth
        self.name: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> "Xvfb":
        binary = shutil.which("Xvfb")
        if binary is None:
            raise DisplayError("Xvfb is not installed: `sudo apt-get install xvfb` (or give a display with desktop.display)")
        read_fd, write_fd = os.pipe()
        # Xvfb's messages go to a file: an unread pipe would fill up and block the server.
        self._log = tempfile.TemporaryFile()
        # -displayfd: Xvfb picks a free display number and writes it to the pipe once it accepts connections.
        self._proc = subprocess.Popen(
            [
                binary,
                "-displayfd",
                str(write_fd),
                "-screen",
                "0",
                f"{self.width}x{self.height}x{self.depth}",
                "-nolisten",
                "tcp",
                "-noreset",
            ],
            pass_fds=(write_fd,),
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        os.close(write_fd)
        deadline = time.monotonic() + timeout
        data = b""
        os.set_blocking(read_fd, False)
        try:
            while not data.endswith(b"\n"):
                if self._proc.poll() is not None:
                    self._log.seek(0)
                    err = self._log.read().decode(errors="replace")
                    raise DisplayError(f"Xvfb exited with code {self._proc.returncode}: {err.strip()[-300:]}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise DisplayError(f"Xvfb did not start within {timeout:.0f} s")
                try:
                    data += os.read(read_fd, 64)
                except BlockingIOError:
                    time.sleep(0.01)
        finally:
            os.close(read_fd)
        self.name = f":{int(data.strip())}"
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None

    def __enter__(self) -> "Xvfb":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def check_display(display: str | None) -> str:
    """The display to use, or a clear error when there is none."""
    display = display or os.environ.get("DISPLAY")
    if not display:
        raise DisplayError("no X display: set DISPLAY, give desktop.display in the task, or use desktop.xvfb: true")
    number = display.split(":")[-1].split(".")[0]
    if display.startswith(":") and number.isdigit() and not Path(f"/tmp/.X11-unix/X{number}").exists():
        raise DisplayError(f"X display {display} is not running (no /tmp/.X11-unix/X{number})")
    return display


def display_gone(display: str) -> bool:
    """Whether a local display (``:N``) no longer answers: its socket is gone or refuses a connection (the X
    server stopped). A display on another host is never judged gone here."""
    number = display.split(":")[-1].split(".")[0]
    if not display.startswith(":") or not number.isdigit():
        return False
    path = f"/tmp/.X11-unix/X{number}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except TimeoutError:  # a server too busy to accept within a second is there
            return False
        except OSError:
            return True
    return False
