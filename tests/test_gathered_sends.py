"""A running process gathers what customers' messages plan to send at once (issue 20): the console
cards and replies of a short window (``dispatch.gather_ms``) go out in one dispatch round, instead of
a round (a flushed reservation, a claim, a settle) per message. The counts asserted are of rounds
and messages, never of time; the timers are not started, so no other dispatch sends anything."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot import runner as runner_module
from bot.clock import OffsetClock
from bot.gathered_sends import GatheredSends
from bot.hooks import Planned
from bot.timers import DISPATCH_WAKE
from bot.transport.local_puppet import LocalPuppet
from tests.conftest import make_config

OBJECTIONS = ("太贵了，别家便宜两万", "价格再便宜点吧，不然我去别家看看", "预算不够，超了好几万")


def runtime_for(tmp_path: Path, gather_ms: int) -> runner_module.Runtime:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    overrides = {"database": {"url": url}, "web": {"enabled": False}, "dispatch": {"gather_ms": gather_ms}}
    return runner_module.Runtime(make_config(overrides))


def puppet_of(runtime: runner_module.Runtime) -> LocalPuppet:
    [transport] = runtime.bot.transports.values()
    puppet = getattr(transport, "local_puppet", None)
    assert isinstance(puppet, LocalPuppet)
    return puppet


def cards(runtime: runner_module.Runtime) -> list[str]:
    [account_id] = runtime.bot.transports
    console = runtime.bot.directory.console_of(account_id)
    return [m.text for m in puppet_of(runtime).sent if m.conversation_id == console]


async def cards_once(runtime: runner_module.Runtime, count: int) -> list[str]:
    """The console's messages once ``count`` have gone out (waiting at most a few seconds)."""
    for _ in range(250):
        if len(cards(runtime)) >= count:
            return cards(runtime)
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(cards(runtime))} console messages of {count}")


def count_dispatches(runtime: runner_module.Runtime, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The rows of every dispatch that named its rows (``run_due(only=...)``), as they happen."""
    dispatches: list[list[int]] = []
    run_due = runtime.bot.dispatcher.run_due

    async def counted(only: Any = None) -> int:
        if only is not None:
            dispatches.append(sorted(only))
        return await run_due(only=only)

    monkeypatch.setattr(runtime.bot.dispatcher, "run_due", counted)
    return dispatches


def objections_from_three_customers(runtime: runner_module.Runtime) -> None:
    puppet = puppet_of(runtime)
    for n, text in enumerate(OBJECTIONS):
        puppet.add_contact(f"wx_{n}", f"客户{n}", friend=True)
        puppet.customer_says(f"wx_{n}", text)


async def test_a_busy_moment_sends_its_console_cards_in_one_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtime_for(tmp_path, gather_ms=2000)
    await runtime.bot.start()
    try:
        dispatches = count_dispatches(runtime, monkeypatch)
        objections_from_three_customers(runtime)
        await runtime.bot.settle()
        assert cards(runtime) == [] and dispatches == [], "the window is still open"
        assert len(await cards_once(runtime, len(OBJECTIONS))) == len(OBJECTIONS)
        await asyncio.sleep(0.3)
        assert len(cards(runtime)) == len(OBJECTIONS), "each card once"
        assert len(dispatches) < len(OBJECTIONS), f"fewer rounds than messages: {dispatches}"
        assert sum(len(rows) for rows in dispatches) == len(OBJECTIONS)
    finally:
        await runtime.stop()


async def test_without_a_window_each_message_sends_its_own_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtime_for(tmp_path, gather_ms=0)
    assert runtime.bot.gathered is None
    await runtime.bot.start()
    try:
        dispatches = count_dispatches(runtime, monkeypatch)
        objections_from_three_customers(runtime)
        await runtime.bot.settle()
        assert len(cards(runtime)) == len(OBJECTIONS), "sent by the handlers themselves"
        assert len(dispatches) == len(OBJECTIONS) and all(len(rows) == 1 for rows in dispatches)
    finally:
        await runtime.stop()


async def test_a_stop_within_the_window_sends_what_waits_and_only_that(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before sends were gathered, a message's handler sent its card before a stop could begin; a
    stop during the window sends it too (not at the next start), in a round of those rows alone."""
    runtime = runtime_for(tmp_path, gather_ms=2000)
    await runtime.bot.start()
    stopped = False
    try:
        dispatches = count_dispatches(runtime, monkeypatch)
        puppet = puppet_of(runtime)
        puppet.add_contact("wx_0", "客户0", friend=True)
        puppet.customer_says("wx_0", OBJECTIONS[0])
        await runtime.bot.settle()
        assert cards(runtime) == [], "still gathering"
        [account_id] = runtime.bot.transports
        console = runtime.bot.directory.console_of(account_id)
        await runtime.stop()
        stopped = True
        assert len([m for m in puppet.sent if m.conversation_id == console]) == 1
        [rows] = dispatches
        assert len(rows) == 1
    finally:
        if not stopped:
            await runtime.stop()


async def test_a_failed_round_leaves_its_rows_to_the_poll(caplog: pytest.LogCaptureFixture) -> None:
    rounds: list[frozenset[int]] = []

    async def failing(rows: frozenset[int]) -> None:
        rounds.append(rows)
        if len(rounds) == 1:
            raise RuntimeError("database is locked")

    gathered = GatheredSends(failing, window_seconds=0.01)
    gathered.add([1, 2])
    gathered.add([3])
    assert gathered.task is not None
    await gathered.task
    gathered.add([4])  # a later window gets a round of its own
    await gathered.close(5)
    assert rounds == [frozenset({1, 2, 3}), frozenset({4})]
    assert "the next poll sends them" in caplog.text
    gathered.add([5])  # closed: it stays planned for the next start
    assert gathered.task is None and rounds[-1] == frozenset({4})


async def test_after_a_fast_forward_a_wake_up_is_on_real_time(tmp_path: Path) -> None:
    """The simulator's fast-forward moves the bot's clock ahead of the timers' real time: a row due
    in ten minutes on the bot's clock wakes the dispatcher ten minutes from now, not a day later."""
    runtime = runtime_for(tmp_path, gather_ms=50)
    await runtime.bot.start()
    runtime.timers.start()
    try:
        if runtime.timers.scheduler.get_job(DISPATCH_WAKE) is not None:  # the login's, due now
            runtime.timers.scheduler.remove_job(DISPATCH_WAKE)
        clock = runtime.bot.clock
        assert isinstance(clock, OffsetClock)
        clock.set(clock.now() + timedelta(days=1))
        before = datetime.now(UTC)
        await runtime.bot.hooks.emit(Planned(clock.now() + timedelta(minutes=10)))
        job = runtime.timers.scheduler.get_job(DISPATCH_WAKE)
        assert job is not None
        assert before + timedelta(minutes=9) < job.next_run_time < datetime.now(UTC) + timedelta(minutes=11)
    finally:
        await runtime.stop()
