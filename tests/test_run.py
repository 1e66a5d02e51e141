"""`salesbot run` as a user runs it: a real process, a banner, a clean stop on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import write_config


def test_run_on_embedded_default_prints_banner_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        output = "".join(lines)
        assert "salesbot is running" in output, output
        assert "account demo" in output and "embedded local puppet" in output
        assert "salesbot simulate examples/welcome.toml" in output
        url = re.search(r"dashboard: (http://127\.0\.0\.1:\d+)/dashboard", output)
        assert url, output
        with urllib.request.urlopen(f"{url.group(1)}/api/metrics", timeout=10) as response:
            assert json.load(response)["team"]["new_friends"] == 0
        with urllib.request.urlopen(f"{url.group(1)}/dashboard", timeout=10) as response:
            assert '<svg id="funnel"' in response.read().decode()
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output + rest
    assert "Traceback" not in output + rest
    assert (tmp_path / "data" / "salesbot.db").exists(), "the SQLite file is created next to the config"


def test_busy_web_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    config = write_config(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bot", "run", "--config", str(config), "--port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"error: web: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_stops_promptly_with_a_simulator_tab_open(tmp_path: Path) -> None:
    """An open simulator tab holds an event stream; a stop ends it instead of waiting it out."""
    import http.client

    from tests.cli_process import TOKEN, Bot

    write_config(tmp_path)
    bot = Bot(tmp_path)
    host, port = bot.url.removeprefix("http://").split(":")
    tab = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        tab.request("GET", f"/sim/events?token={TOKEN}", headers={"Accept": "text/event-stream"})
        stream = tab.getresponse()
        assert stream.status == 200 and stream.readline().startswith(b": connected")
        bot.process.send_signal(signal.SIGINT)
        try:
            bot.process.communicate(timeout=10)  # aiohttp's own grace alone is 60 s
        except subprocess.TimeoutExpired:
            bot.kill()
            raise AssertionError("salesbot run still running 10 s after Ctrl-C with a tab open") from None
        assert bot.process.returncode == 0
    finally:
        tab.close()
        if bot.process.poll() is None:
            bot.kill()


async def test_stopping_cuts_a_late_dispatch_short_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A dispatch still sending after the grace period is cancelled by stop(): the job ends quietly
    (the scheduler would log any exception it raised as a traceback) with one line saying so."""
    from bot import runner as runner_module
    from tests.conftest import make_config

    monkeypatch.setattr(runner_module, "STOP_GRACE_SECONDS", 0.05)
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    runtime = runner_module.Runtime(make_config({"database": {"url": url}, "web": {"enabled": False}}))
    await runtime.bot.start()
    started = asyncio.Event()

    async def stuck() -> None:  # a send that hangs on the platform
        started.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(runtime.bot, "run_due", stuck)
    job = asyncio.create_task(runtime.dispatch())
    await started.wait()
    with caplog.at_level(logging.INFO):
        await runtime.stop()
    assert job.done() and not job.cancelled() and job.exception() is None
    assert any("unsent messages stay planned" in r.getMessage() for r in caplog.records)


async def test_a_wake_up_during_a_dispatch_runs_it_again_after_without_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A row planned while the dispatcher sends (a burst of friend requests) wakes it: the running
    dispatch goes round once more when done, instead of APScheduler skipping the wake-up with a
    warning and the row waiting for the next poll."""
    from bot import runner as runner_module
    from bot.hooks import Planned
    from tests.conftest import make_config

    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    config = make_config({"database": {"url": url}, "web": {"enabled": False}})
    runtime = runner_module.Runtime(config)
    await runtime.bot.start()
    started, release = asyncio.Event(), asyncio.Event()
    rounds: list[int] = []

    async def run_due() -> None:
        rounds.append(len(rounds))
        started.set()
        if len(rounds) == 1:
            await release.wait()  # the first dispatch is still sending

    monkeypatch.setattr(runtime.bot, "run_due", run_due)
    runtime.timers.start()
    try:
        with caplog.at_level(logging.INFO):
            await runtime.bot.hooks.emit(Planned(datetime.now(UTC)))  # the scheduler's job sends
            await asyncio.wait_for(started.wait(), 5)
            for _ in range(3):  # three rows planned meanwhile, due now: three wake-ups
                await runtime.bot.hooks.emit(Planned(datetime.now(UTC)))
                await asyncio.sleep(0.1)  # the scheduler runs each
            assert rounds == [0], "no second dispatch alongside the first"
            release.set()
            for _ in range(100):
                if len(rounds) > 1 and not runtime._dispatching:
                    break
                await asyncio.sleep(0.02)
        assert rounds == [0, 1], "one more round for all the wake-ups"
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    finally:
        await runtime.stop()


async def test_stopping_lets_a_dispatch_a_timer_started_finish_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dispatch that a timer started (not only the one start() runs) gets the grace period:
    shutting APScheduler down cancels its jobs' tasks, so the timers pause first and shut down
    after it."""
    from bot import runner as runner_module
    from bot.hooks import Planned
    from tests.conftest import make_config

    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    runtime = runner_module.Runtime(make_config({"database": {"url": url}, "web": {"enabled": False}}))
    await runtime.bot.start()
    started = asyncio.Event()
    sent: list[str] = []

    async def sending() -> None:
        started.set()
        await asyncio.sleep(0.3)  # the message in hand, well within the grace period
        sent.append("sent")

    monkeypatch.setattr(runtime.bot, "run_due", sending)
    runtime.timers.start()
    await runtime.bot.hooks.emit(Planned(datetime.now(UTC)))  # the wake-up job dispatches
    await asyncio.wait_for(started.wait(), 5)
    await runtime.stop()
    assert sent == ["sent"]


def test_the_stop_grace_stays_within_a_lease_when_processes_share_accounts() -> None:
    """The heartbeat pauses while stopping waits: with leases, the wait ends before the lease
    renewed last (at most a third of a lease ago) runs out."""
    from bot.runner import STOP_GRACE_SECONDS, stop_grace

    assert stop_grace(30.0, shared=False) == STOP_GRACE_SECONDS
    assert stop_grace(3.0, shared=False) == STOP_GRACE_SECONDS  # SQLite: no leases
    assert stop_grace(30.0, shared=True) == min(STOP_GRACE_SECONDS, 15.0)
    assert stop_grace(3.0, shared=True) == 1.5
