"""An inbound event is all or nothing: the real CLI is killed between recording a customer's opt-out
and applying it; when the platform delivers the same message again, the customer ends up paused.

Before one transaction per inbound event, the message was committed first and the opt-out
applied in later commits: a kill in between left it recorded as received, so the replay was
ignored and the customer kept getting pushed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlmodel import select

from storage.db import Database
from storage.models import Customer, Event, ScheduledMessage
from tests.cli_process import Bot
from tests.conftest import portable_config_text, write_config

OPT_OUT = "别再给我发消息了"


async def _rows(url: str) -> tuple[list[Customer], list[Event], list[ScheduledMessage]]:
    """Every customer, event and planned message in the database the killed process left."""
    db = Database(url)
    try:
        async with db.transaction() as session:
            customers = list((await session.exec(select(Customer))).all())
            events = list((await session.exec(select(Event))).all())
            rows = list((await session.exec(select(ScheduledMessage))).all())
        return customers, events, rows
    finally:
        await db.close()


def _received(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind == "message_in"]


def _killed_saying(folder: Path, crash_at: str, said: dict[str, str]) -> str:
    """The real CLI in ``folder``: 张三 adds the rep, then says ``said``, and the process dies at
    ``crash_at``. Returns the URL of the database it left."""
    bot = Bot(folder, crash_at=crash_at)
    bot.post("/sim/friend_request", {"handle": "zhang", "name": "张三"})
    bot.post_until_killed("/sim/say", said)
    return f"sqlite+aiosqlite:///{folder / 'data' / 'salesbot.db'}"


def test_a_kill_between_receiving_an_opt_out_and_applying_it_loses_nothing(tmp_path: Path) -> None:
    write_config(tmp_path)
    said = {"handle": "zhang", "text": OPT_OUT, "message_id": "m-opt-out"}
    url = _killed_saying(tmp_path, "inbound.recorded", said)
    [customer], events, rows = asyncio.run(_rows(url))
    assert _received(events) == [], "nothing of the killed event committed"
    assert customer.paused_at is None
    followups = [r for r in rows if r.kind == "followup"]
    assert followups and all(r.status == "pending" for r in followups)

    bot = Bot(tmp_path)  # no crash this time; the platform delivers the same events again
    try:
        bot.post("/sim/friend_request", {"handle": "zhang", "name": "张三"})
        bot.post("/sim/say", said)
        bot.post("/sim/say", said)
    finally:
        output = bot.stop()
    assert "Traceback" not in output, output

    [customer], events, rows = asyncio.run(_rows(url))
    assert customer.paused_at is not None, "the replayed opt-out was applied"
    assert [e.external_id for e in _received(events)] == ["m-opt-out"], "recorded once, replays ignored"
    assert all(r.status != "pending" for r in rows if r.kind == "followup"), "no follow-up will go out"
    [alert] = [r for r in rows if r.kind == "alert" and ":opt_out:" in r.idempotency_key]
    assert alert.status == "sent" and "已暂停" in alert.context["text"], "the rep was told once"
    assert [r.kind for r in rows].count("welcome") == 1, "re-adding did not plan a second welcome"


def test_a_friend_accepted_just_before_a_kill_is_not_forgotten(tmp_path: Path) -> None:
    write_config(tmp_path)
    Bot(tmp_path, crash_at="welcome.accepted").post_until_killed(
        "/sim/friend_request", {"handle": "zhang", "name": "张三"}
    )

    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'salesbot.db'}"
    customers, events, rows = asyncio.run(_rows(url))
    kinds = [e.kind for e in events]
    assert customers == [] and not [r for r in rows if r.kind == "welcome"], "accepted, not recorded"
    assert "friend_request_received" in kinds, "but the request itself was recorded first"

    bot = Bot(tmp_path)  # the restart finishes it
    output = bot.stop()
    assert "Traceback" not in output, output
    customers, events, rows = asyncio.run(_rows(url))
    kinds = [e.kind for e in events]
    assert [c.display_name for c in customers] == ["张三"]
    assert [r.kind for r in rows].count("welcome") == 1, "welcomed (within the welcome's validity)"
    assert kinds.count("friend_request") == 1


def test_a_kill_before_a_hot_lead_is_flagged_loses_nothing_and_alerts_once(tmp_path: Path) -> None:
    write_config(tmp_path)
    said = {"handle": "zhang", "text": "什么时候能提车？", "message_id": "m-hot"}
    url = _killed_saying(tmp_path, "inbound.recorded", said)
    _, events, rows = asyncio.run(_rows(url))
    assert _received(events) == [] and [r for r in rows if r.kind == "signal"] == []

    bot = Bot(tmp_path)
    try:
        bot.post("/sim/friend_request", {"handle": "zhang", "name": "张三"})
        bot.post("/sim/say", said)
        bot.post("/sim/say", said)
    finally:
        output = bot.stop()
    assert "Traceback" not in output, output

    _, events, rows = asyncio.run(_rows(url))
    assert [e.kind for e in events].count("hot_lead") == 1
    signals = [r for r in rows if r.kind == "signal"]
    assert sorted(r.step for r in signals) == ["-", "nudge"], "one alert and one nudge"
    [alert] = [r for r in signals if r.step == "-"]
    assert alert.status == "sent" and "想成交了" in alert.context["text"]


def test_a_kill_right_after_a_group_commit_loses_nothing_and_sends_once(tmp_path: Path) -> None:
    """A customer's text commits without waiting for the disk (storage/group_commit.py): the real
    CLI killed right after that commit, before the suggestion went out, leaves the message and its
    suggestion in the file, and the restart sends the suggestion once. (A killed process keeps
    its writes in the operating system either way: which commits were group commits is
    tests/test_group_commit.py's to show.)"""
    # follow-ups kept after a reply: the text cancels nothing, so nothing makes it flush at once
    text = portable_config_text().replace("skip_if_replied = true", "skip_if_replied = false")
    assert "skip_if_replied = false" in text
    write_config(tmp_path, text)
    said = {"handle": "zhang", "text": "太贵了", "message_id": "m-price"}
    url = _killed_saying(tmp_path, "inbound.committed", said)
    _, events, rows = asyncio.run(_rows(url))
    assert [e.external_id for e in _received(events)] == ["m-price"], "committed"
    [suggestion] = [r for r in rows if r.kind == "suggestion"]
    assert suggestion.status == "pending", "killed before it went out"

    bot = Bot(tmp_path)
    try:
        bot.post("/sim/say", said)  # the platform delivers it again: a replay, nothing new
    finally:
        output = bot.stop()
    assert "Traceback" not in output, output
    _, events, rows = asyncio.run(_rows(url))
    assert [e.external_id for e in _received(events)] == ["m-price"]
    [suggestion] = [r for r in rows if r.kind == "suggestion"]
    assert suggestion.status == "sent", "sent once, after the restart"
