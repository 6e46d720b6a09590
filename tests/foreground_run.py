"""A command run as a terminal's foreground job: its own process group, its output collected live as it comes, and
SIGINT to the whole group to stop it, as Ctrl-C does. `make demo` (tests/test_end_to_end.py) and `space.demo`
(tests/test_demo_server.py) are run so."""

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 60


class ForegroundRun:
    def __init__(self, command: list[str], env: dict[str, str] | None = None):
        self.command = command
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.output):
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        self.interrupt()
        pytest.fail(f"no {pattern!r} from {self.command[0]} (exit {self.process.poll()}):\n{self.output[-4000:]}")

    def interrupt(self) -> int:
        """SIGINT to the whole process group, as Ctrl-C in a terminal; the exit status once everything has ended."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        returncode = self.process.wait(timeout=STOP_TIMEOUT_S)
        self._reader.join(timeout=5)
        return returncode

    def finish(self, timeout_s: float) -> str:
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.interrupt()
            pytest.fail(f"{self.command[0]} did not finish in {timeout_s}s:\n{self.output[-4000:]}")
        self._reader.join(timeout=5)
        assert self.process.returncode == 0, self.output[-4000:]
        return self.output
