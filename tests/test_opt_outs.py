"""Opt-outs tell the rep in one line how to undo them (issue 17), and a customer who asked for no
more messages is never an owed reply: no nudge to the rep, nothing in the digest."""

from __future__ import annotations

from datetime import timedelta

from storage.models import ScheduledMessage
from tests.harness import Harness


async def test_a_soft_opt_out_says_resume_undoes_it(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep("/countdown @张三 11-30 20:00")
    await sim.customer_says("c1", "别老催我了")
    alert = sim.sent("alert", "console")[-1]["text"]
    assert "\n" not in alert and "恢复推送请发 /resume @#1" in alert
    await sim.rep("/resume @张三")
    statuses = {r.status for r in await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")}
    assert statuses == {"pending"}


async def test_an_opt_out_says_resume_undoes_it(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.customer_says("c1", "以后不要再给我发消息了")
    alert = sim.sent("alert", "console")[-1]["text"]
    assert "\n" not in alert and "需要恢复请发 /resume @#1" in alert


async def test_an_opted_out_customer_is_owed_no_reply(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.advance(timedelta(hours=1))
    nudges_before = len(sim.sent("alert", "console"))
    await sim.customer_says("c1", "以后不要再给我发消息了")
    await sim.advance(timedelta(hours=3))
    later = [m["text"] for m in sim.sent("alert", "console")[nudges_before:]]
    assert len(later) == 1 and "已暂停对TA的全部自动消息" in later[0], "the opt-out alert, no owed nudge"


async def test_a_nul_character_from_the_platform_loses_nothing(sim: Harness) -> None:
    """PostgreSQL refuses NUL in text: a name or a message carrying one is stored without it."""
    await sim.customer_in_chat("c1", "张\x00三")
    await sim.customer_says("c1", "以后不要\x00再给我发消息了")
    customer = await sim.customer("c1")
    assert customer.display_name == "张三"
    alert = sim.sent("alert", "console")[-1]["text"]
    assert "已暂停对TA的全部自动消息" in alert
