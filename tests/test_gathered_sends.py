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
from bot.services.alerts import ConsoleMessages
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

    async def counted(only: Any = None, *, despite_stop: bool = False) -> int:
        if only is not None:
            dispatches.append(sorted(only))
        return await run_due(only=only, despite_stop=despite_stop)

    monkeypatch.setattr(runtime.bot.dispatcher, "run_due", counted)
    return dispatches


def texts_to(puppet: LocalPuppet, conversation_id: str) -> list[str]:
    return [m.text for m in puppet.sent if m.conversation_id == conversation_id]


def objections_from_three_customers(runtime: runner_module.Runtime) -> None:
    puppet = puppet_of(runtime)
    for n, text in enumerate(OBJECTIONS):
        puppet.add_contact(f"wx_{n}", f"客户{n}", friend=True)
        puppet.customer_says(f"wx_{n}", text)


async def handled(runtime: runner_module.Runtime) -> None:
    """Wait for the handlers (not for what they gathered: ``SalesBot.settle`` sends that too)."""
    for transport in runtime.bot.transports.values():
        await transport.settle()


def gathered(runtime: runner_module.Runtime) -> GatheredSends:
    """The runtime's gatherer, its window made endless: rounds happen when the test says."""
    assert runtime.bot.gathered is not None
    runtime.bot.gathered.window_seconds = 3600
    return runtime.bot.gathered


async def test_a_busy_moment_sends_its_console_cards_in_one_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtime_for(tmp_path, gather_ms=50)
    await runtime.bot.start()
    try:
        gathered(runtime)
        dispatches = count_dispatches(runtime, monkeypatch)
        objections_from_three_customers(runtime)
        await handled(runtime)
        assert cards(runtime) == [] and dispatches == [], "gathered, not sent yet"
        await runtime.bot.settle()  # what the simulator and the tests wait on: the round goes now
        assert len(cards(runtime)) == len(OBJECTIONS), "each card, once"
        [rows] = dispatches
        assert len(rows) == len(OBJECTIONS), "one round for the three messages"
    finally:
        await runtime.stop()


async def test_a_window_ends_in_a_round_without_anyone_waiting(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path, gather_ms=50)
    await runtime.bot.start()
    try:
        objections_from_three_customers(runtime)
        await handled(runtime)
        assert len(await cards_once(runtime, len(OBJECTIONS))) == len(OBJECTIONS)
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
        await handled(runtime)
        assert len(cards(runtime)) == len(OBJECTIONS), "sent by the handlers themselves"
        assert len(dispatches) == len(OBJECTIONS) and all(len(rows) == 1 for rows in dispatches)
    finally:
        await runtime.stop()


async def test_a_stop_sends_what_waits_after_the_dispatch_in_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before sends were gathered, a message's handler sent its card before a stop could begin; a
    stop sends it too (not at the next start), in a round of those rows alone, once a dispatch of
    every due row that was under way has finished its message in hand and claimed no more."""
    runtime = runtime_for(tmp_path, gather_ms=50)
    await runtime.bot.start()
    stopped = False
    try:
        gathered(runtime)
        [account_id] = runtime.bot.transports
        console = runtime.bot.directory.console_of(account_id)
        async with runtime.bot.db.transaction() as session:  # two alerts due now, for the timers
            for key in ("a", "b"):
                await ConsoleMessages(runtime.bot.clock).alert(session, account_id, f"提醒{key}", key)
        [transport] = runtime.bot.transports.values()
        send_text = transport.send_text
        in_hand, release = asyncio.Event(), asyncio.Event()

        async def slow_for_the_first_alert(conversation_id: str, text: str) -> str | None:
            if text.startswith("提醒"):
                in_hand.set()
                await release.wait()
            return await send_text(conversation_id, text)

        monkeypatch.setattr(transport, "send_text", slow_for_the_first_alert)
        dispatch = asyncio.create_task(runtime.dispatch())  # a timer's dispatch of every due row
        await in_hand.wait()
        dispatches = count_dispatches(runtime, monkeypatch)
        puppet = puppet_of(runtime)
        puppet.add_contact("wx_0", "客户0", friend=True)
        puppet.customer_says("wx_0", OBJECTIONS[0])
        await handled(runtime)
        assert dispatches == [], "gathered"
        stop = asyncio.create_task(runtime.stop())
        for _ in range(500):  # the gathered round starts, and waits for the dispatch in hand
            if dispatches:
                break
            await asyncio.sleep(0.01)
        assert dispatches and len(texts_to(puppet, console)) == 0, "nothing sent while it is in hand"
        release.set()
        await stop
        stopped = True
        assert dispatch.done() and dispatch.exception() is None
        texts = texts_to(puppet, console)
        assert len(texts) == 2 and texts[0].startswith("提醒"), "the alert in hand, then the card"
        assert not texts[1].startswith("提醒"), "the second alert was not sent: it waits, planned"
        [rows] = dispatches
        assert len(rows) == 1, "a round of the gathered row alone"
    finally:
        if not stopped:
            await runtime.stop()


async def test_rows_added_after_a_stop_stay_planned_and_a_failed_round_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[frozenset[int]] = []

    async def failing(rows: frozenset[int]) -> None:
        rounds.append(rows)
        if len(rounds) == 1:
            raise RuntimeError("database is locked")

    gatherer = GatheredSends(failing, window_seconds=0.01)
    gatherer.add([1, 2])
    gatherer.add([3])
    await gatherer.flush()
    assert rounds == [frozenset({1, 2, 3})] and gatherer.task is None
    assert "sending 3 message(s) due at once failed" in caplog.text
    gatherer.add([4])  # a later window gets a round of its own
    last = gatherer.close()
    assert last is not None
    await last
    assert rounds[-1] == frozenset({4})
    gatherer.add([5])  # closed: it stays planned for the next start
    assert gatherer.task is None
    await asyncio.sleep(0.05)
    assert rounds[-1] == frozenset({4})


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


async def test_a_flush_sends_what_waits_then_and_does_not_chase_later_rows() -> None:
    """``SalesBot.settle`` flushes: it must end under a steady load, so rows added while the flushed
    round runs wait their own window."""
    sent: list[frozenset[int]] = []

    async def send(rows: frozenset[int]) -> None:
        sent.append(rows)
        if rows == {1}:
            gatherer.add([2])  # a customer's message handled meanwhile

    gatherer = GatheredSends(send, window_seconds=3600)
    assert not await gatherer.flush(), "nothing to wait for"
    gatherer.add([1])
    assert await gatherer.flush()
    assert sent == [frozenset({1})] and gatherer.task is not None, "row 2 waits its window"
    assert await gatherer.flush()
    assert sent == [frozenset({1}), frozenset({2})]
    last = gatherer.close()
    if last is not None:
        await last
    assert gatherer.task is None


async def test_a_row_added_as_the_last_round_ends_gets_a_round() -> None:
    """The task clears itself in the step its last check finds nothing waiting: a handler resuming
    right after (before any done-callback) starts a new task, and a flush waits for its round."""
    sent: list[frozenset[int]] = []
    loop = asyncio.get_running_loop()

    async def send(rows: frozenset[int]) -> None:
        sent.append(rows)
        if rows == {1}:  # runs once this round's task has finished, before its done-callbacks
            loop.call_soon(gatherer.add, [2])

    gatherer = GatheredSends(send, window_seconds=0.01)
    gatherer.add([1])
    assert gatherer.task is not None
    await gatherer.task
    await asyncio.sleep(0)  # the call_soon above
    assert gatherer.task is not None, "row 2 has a task of its own"
    assert await asyncio.wait_for(gatherer.flush(), 5)
    assert sent == [frozenset({1}), frozenset({2})]


async def test_a_round_cut_short_by_a_stop_leaves_nothing_to_wait_for() -> None:
    started = asyncio.Event()

    async def hangs(rows: frozenset[int]) -> None:
        started.set()
        await asyncio.Event().wait()  # a send the platform never answers

    gatherer = GatheredSends(hangs, window_seconds=0.01)
    gatherer.add([1])
    await started.wait()
    gatherer.add([2])  # waits behind the hanging round
    flushing = asyncio.create_task(gatherer.flush())  # a settle, waiting for rows 1 and 2
    await asyncio.sleep(0)
    task = gatherer.close()
    assert task is not None
    task.cancel()  # the stop's grace is over
    await asyncio.wait({task})
    assert await asyncio.wait_for(flushing, 5), "the waiting flush ends with the rounds"
    assert gatherer.task is None
    assert not await asyncio.wait_for(gatherer.flush(), 5), "nothing left to wait for"


async def test_a_cancelled_error_from_the_send_is_a_failed_round_not_a_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A transport's cancelled future raises CancelledError into the round without cancelling it:
    the round failed (logged), and the gatherer goes on with the next window."""
    sent: list[frozenset[int]] = []

    async def send(rows: frozenset[int]) -> None:
        sent.append(rows)
        if rows == {1}:
            gatherer.add([2])
            raise asyncio.CancelledError

    gatherer = GatheredSends(send, window_seconds=0.01)
    gatherer.add([1])
    assert await gatherer.flush()
    assert "sending 1 message(s) due at once failed" in caplog.text
    assert await asyncio.wait_for(gatherer.flush(), 5)
    assert sent == [frozenset({1}), frozenset({2})]
