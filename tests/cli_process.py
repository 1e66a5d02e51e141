"""``salesbot run`` as a real process, driven through its web simulator (crash tests kill it)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.faults import CRASH_ENV

TOKEN = "crash-test-token"


class Bot:
    """``salesbot run`` in a subprocess, driven through its web simulator."""

    def __init__(
        self,
        folder: Path,
        crash_at: str | None = None,
        env: dict[str, str] | None = None,
        *,
        wait: bool = True,
    ) -> None:
        """Start ``salesbot run`` in ``folder``; with ``wait``, until its banner says it is running
        (its startup dispatch of what is due comes first)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SALESBOT_WEB_TOKEN": TOKEN, **(env or {})}
        env.pop(CRASH_ENV, None)
        if crash_at:
            env[CRASH_ENV] = crash_at
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--config", str(folder / "config.toml"), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=folder,
            env=env,
        )
        self.output = ""
        self.url = self._wait_for_banner() if wait else ""

    def _wait_for_banner(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output += line
            if "Press Ctrl-C to stop." in line:
                found = re.search(r"dashboard: (http://127\.0\.0\.1:\d+)/dashboard", self.output)
                assert found, self.output
                return found.group(1)
        raise AssertionError(f"salesbot did not start:\n{self.output}")

    def post(self, path: str, body: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            result: dict[str, Any] = json.load(response)
            return result

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        rest, _ = self.process.communicate(timeout=30)
        return self.output + rest

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, as when the machine's OOM killer or a deploy strikes."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.communicate(timeout=30)  # reap it and close its pipe

    def post_until_killed(self, path: str, body: dict[str, str]) -> None:
        """Post what makes the process reach its crash point; returns once it died as if SIGKILLed."""
        try:
            with contextlib.suppress(urllib.error.URLError, ConnectionError):
                self.post(path, body)  # the process dies while answering: that is the point
            rest, _ = self.process.communicate(timeout=30)  # also closes the pipe
            assert self.process.returncode == 137, self.output + rest
        finally:
            if self.process.poll() is None:
                self.kill()


def kill_point(rng: random.Random, delivered: int, total: int, kills_left: int) -> int:
    """How many deliveries to wait for before the next kill: a random point inside this run's fair
    share of what is left, so every kill lands while sending however fast the machine sends (a kill
    timed in seconds let a fast machine finish the whole job first)."""
    share = max(1, (total - delivered) // (kills_left + 1))
    return delivered + rng.randint(1, share)


def wait_for(
    progress: Callable[[], int], target: int, process: subprocess.Popen[str], timeout: float
) -> None:
    """Poll ``progress`` until it reaches ``target``, ``process`` ends or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while progress() < target and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
