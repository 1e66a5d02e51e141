"""A command that fails unexpectedly: the rep hears one plain sentence with a reference, the log has
the traceback under the same reference, and nothing the command did is kept. An audit write that
fails never turns a success into a failure."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from bot.services.profile import ProfileService
from bot.simulate import Simulation
from storage.models import Customer, Event, ScheduledMessage, StageChange
from storage.repositories import Events

REF = re.compile(r"错误编号 ([0-9a-f]{6})")
# the audit line and the reply sent to the console are not the command's own work
NOT_THE_COMMANDS = ("command", "message_out")


async def rows(sim: Simulation, model: type, *where: Any) -> list[Any]:
    async with sim.bot.db.transaction() as session:
        return list((await session.exec(select(model).where(*where))).all())


async def own_events(sim: Simulation) -> list[Event]:
    """Events a command's own work writes (not its audit line or the reply sent to the console)."""
    return [e for e in await rows(sim, Event) if e.kind not in NOT_THE_COMMANDS]


def replies(sim: Simulation) -> list[str]:
    return [m["text"] for m in sim.output if m["kind"] == "command_reply"]


async def rep(sim: Simulation, text: str) -> str:
    before = len(replies(sim))
    await sim.rep_types(text)
    new = replies(sim)[before:]
    assert len(new) == 1, f"expected exactly one reply to {text!r}, got {new}"
    return new[0]


@pytest.fixture
async def one(sim: Simulation) -> Simulation:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    return sim


async def test_unexpected_error_answers_plainly_logs_the_reference_and_changes_nothing(
    one: Simulation, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    [before] = await rows(one, Customer)
    events_before = await own_events(one)
    planned_before = await rows(one, ScheduledMessage)

    async def broken_card(self: ProfileService, customer_id: int) -> Any:
        raise RuntimeError("internal_boom in ProfileService.card")

    # /order writes the stage move, the order and the aftercare plan, then the card for the reply
    # header fails: everything the command wrote must go
    monkeypatch.setattr(ProfileService, "card", broken_card)
    with caplog.at_level(logging.ERROR, logger="bot.services.console"):
        reply = await rep(one, "/order @张三 A套餐")

    match = REF.search(reply)
    assert match is not None, reply
    assert reply == (
        f"这条命令没有完成，系统出了意外问题，已记录（错误编号 {match[1]}）。请稍后再试或联系管理员。"
    )
    for internal in ("Traceback", "RuntimeError", "internal_boom", "ProfileService", "card"):
        assert internal not in reply

    [record] = [r for r in caplog.records if r.name == "bot.services.console" and r.levelno == logging.ERROR]
    assert match[1] in record.getMessage() and "order @张三 A套餐" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)

    [after] = await rows(one, Customer)
    assert after.stage == before.stage == "stranger"
    assert await rows(one, StageChange, StageChange.to_stage == "ordered") == []
    assert await own_events(one) == events_before, "no order, no stage event"
    assert await rows(one, ScheduledMessage) == planned_before, "no aftercare planned"
    [logged] = await rows(one, Event, Event.kind == "command")
    assert (logged.text, logged.data["ok"]) == ("order @张三 A套餐", False)

    monkeypatch.undo()  # the same command works once the fault is gone
    assert "已记录成交：A套餐" in await rep(one, "/order @张三 A套餐")
    assert (await rows(one, Customer))[0].stage == "ordered"


async def test_a_failing_audit_write_leaves_the_success_reply_unchanged(
    one: Simulation, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = Events.record

    async def record(self: Events, account_id: str, kind: str, *args: Any, **kwargs: Any) -> bool:
        if kind == "command":
            raise RuntimeError("the events table is gone")
        return await original(self, account_id, kind, *args, **kwargs)

    monkeypatch.setattr(Events, "record", record)
    with caplog.at_level(logging.ERROR, logger="bot.services.console"):
        reply = await rep(one, "/stage @张三 intent")

    assert reply == "【张三 #1 · 意向】\n阶段：陌生 → 意向"
    assert [c.stage for c in await rows(one, Customer)] == ["intent"]
    assert len(await rows(one, StageChange, StageChange.to_stage == "intent")) == 1
    assert await rows(one, Event, Event.kind == "command") == []
    [record_] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "stage @张三 intent" in record_.getMessage() and record_.exc_info is not None


@pytest.mark.parametrize(
    ("line", "answer"),
    [
        ("/cancel @张三 99999999999999999999", "用法：/cancel [编号|all]"),
        ("/cancel @张三 #99999999999999999999", "用法：/cancel [编号|all]"),
        ("/cancel @张三 ²", "用法：/cancel [编号|all]"),  # a digit to str.isdigit, not to int()
        ("/send @张三 99999999999999999999", "用法：/send <编号> [追加文字]"),
        ("/pick 99999999999999999999", "用法：/pick <编号>"),
        ("/find 张 99999999999999999999", "用法：/find <名字|标签|阶段> [页码]"),
        ("/info @#99999999999999999999", "没有找到客户「#99999999999999999999」"),
        ("/info @#²", "没有找到客户「#²」"),
        ("/countdown @张三 +99999999999d", "用法：/countdown <截止时间> [活动名]"),
    ],
)
async def test_huge_numbers_get_the_usage_line_not_a_crash(one: Simulation, line: str, answer: str) -> None:
    reply = await rep(one, line)
    assert answer in reply and "错误编号" not in reply, reply
