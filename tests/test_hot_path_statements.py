"""The inbound hot path's database round trips (issue 20), counted, never timed: an ordinary
customer text, an objection and a friend request each stay within a fixed number of SQL
statements, so a change that adds a query or a flush to the hot path fails here, not in a
benchmark nobody runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from storage.models import Event, ScheduledMessage
from tests.harness import Harness


@dataclass
class Counted:
    """Statements (their first words) and commits seen while ``active``."""

    active: bool = False
    statements: list[str] = field(default_factory=list)
    commits: int = 0


@contextmanager
def counting(sim: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[Counted]:
    """Count what the bot's inbound handlers send to the database: only while one of them runs
    (what the dispatcher does afterwards is another budget)."""
    counted = Counted()
    engines = sim.bot.db.sync_engines()

    def on_statement(*args: Any) -> None:
        if counted.active:
            counted.statements.append(" ".join(str(args[2]).split()[:3]))

    def on_commit(*args: Any) -> None:
        if counted.active:
            counted.commits += 1

    customer_wrote = sim.bot.customer_wrote
    on_friend_request = sim.bot.welcome.on_friend_request

    def active(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def run(*args: Any, **kwargs: Any) -> Any:
            counted.active = True
            try:
                return await handler(*args, **kwargs)
            finally:
                counted.active = False

        return run

    for engine in engines:
        event.listen(engine, "before_cursor_execute", on_statement)
        event.listen(engine, "commit", on_commit)
    with monkeypatch.context() as patch:
        patch.setattr(sim.bot, "customer_wrote", active(customer_wrote))
        patch.setattr(sim.bot.welcome, "on_friend_request", active(on_friend_request))
        try:
            yield counted
        finally:
            for engine in engines:
                event.remove(engine, "commit", on_commit)
                event.remove(engine, "before_cursor_execute", on_statement)


async def welcomed_and_replied(sim: Harness) -> None:
    """Two customers, welcomed, who have each written once (the hot path's usual customer)."""
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    await sim.customer_says("c1", "你好")
    await sim.customer_says("c2", "你好")
    await sim.advance(timedelta(minutes=5))


async def test_an_ordinary_customer_text_is_three_statements_in_one_commit(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await welcomed_and_replied(sim)
    with counting(sim, monkeypatch) as counted:
        await sim.customer_says("c1", "收到，谢谢")
    # the customer, the message (a replay stops there), the customer's last message time; no
    # follow-ups to drop (the first reply dropped them), nothing else to plan
    assert counted.statements == [
        "SELECT customer.id, customer.account_id,",
        "INSERT INTO event",
        "UPDATE customer SET",
    ]
    assert counted.commits == 1
    [stored] = await sim.rows(Event, Event.kind == "message_in", Event.text == "收到，谢谢")
    assert stored.customer_id == (await sim.customer("c1")).id


async def test_an_objection_is_seven_statements_in_one_commit_on_sqlite(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await welcomed_and_replied(sim)
    with counting(sim, monkeypatch) as counted:
        await sim.customer_says("c2", "太贵了")
    # PostgreSQL also locks the account's row to number the suggestion (SQLite's one writer
    # serialises that for free)
    bound = 8 if sim.bot.db.engine.dialect.name == "postgresql" else 7
    assert len(counted.statements) <= bound, counted.statements
    assert counted.commits == 1
    assert len(sim.sent("suggestion", "console")) == 1


async def test_a_friend_request_is_two_commits_of_few_statements(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sim.with_customers(("c1", "张三"))
    with counting(sim, monkeypatch) as counted:
        await sim.friend_request("c9", "王五", "朋友推荐的")
    # the request recorded before the accept (its own commit: a crash after the accept is
    # finished at the next start), then the customer, their history and events, the welcome and
    # the follow-ups: each table written once
    assert len(counted.statements) <= 7, counted.statements
    assert counted.commits == 2
    customer = await sim.customer("c9")
    assert customer.welcome_planned_at is not None and customer.stage == "stranger"
    planned = await sim.rows(ScheduledMessage, ScheduledMessage.customer_id == customer.id)
    assert {row.kind for row in planned} == {"welcome", "followup"}
    kinds = [e.kind for e in await sim.rows(Event, Event.customer_id == customer.id)]
    assert sorted(kinds) == ["customer_created", "friend_request", "welcome_planned"]


async def test_a_readded_customer_who_writes_still_drops_the_new_follow_ups(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follow-up UPDATE is skipped only when the customer wrote after their latest welcome: a
    customer who wrote long ago, left and came back has new follow-ups, and their next message
    drops those (the skip reads the loaded row, never a stale copy)."""
    await welcomed_and_replied(sim)
    await sim.delete("c1")
    await sim.advance(timedelta(days=31))
    await sim.friend_request("c1", "张三")  # after the re-add window: welcomed again, new follow-ups
    await sim.advance(timedelta(minutes=1))
    customer = await sim.customer("c1")
    followups = ScheduledMessage.kind == "followup", ScheduledMessage.customer_id == customer.id
    assert "pending" in {row.status for row in await sim.rows(ScheduledMessage, *followups)}
    with counting(sim, monkeypatch) as counted:
        await sim.customer_says("c1", "收到，谢谢")
    assert "UPDATE scheduled_message SET" in counted.statements
    assert "pending" not in {row.status for row in await sim.rows(ScheduledMessage, *followups)}
    await sim.advance(timedelta(days=8))
    assert sim.sent("followup", "c1") == []


async def test_ranking_reads_script_statistics_again_only_after_a_send_or_a_minute(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An objection ranks its scripts by how they worked (up to 5,000 newest sends): read once and
    reused, not on every message; again as soon as this process records a send (or a stage
    change, an order), and after a minute for what other processes wrote."""
    objections = sim.bot.objections
    reads: list[int] = []
    script_stats = objections.script_stats

    async def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return await script_stats(*args, **kwargs)

    monkeypatch.setattr(objections, "script_stats", counted)
    await welcomed_and_replied(sim)
    await sim.customer_says("c1", "太贵了")
    await sim.customer_says("c2", "价格有点高啊")
    assert len(reads) == 1, "the second objection reused the statistics"
    await sim.rep_types("/send 1", in_chat="c1")  # 张三's first suggested script
    await sim.advance(timedelta(seconds=10))
    assert len(await sim.rows(Event, Event.kind == "script_sent")) == 1
    await sim.customer_says("c1", "还是太贵了")
    assert len(reads) == 2, "a send this process recorded is counted at once"
    await sim.customer_says("c2", "再便宜点吧")
    assert len(reads) == 2
    await sim.advance(timedelta(seconds=61))
    await sim.customer_says("c1", "能不能少点")
    assert len(reads) == 3, "another process's sends show within a minute"
