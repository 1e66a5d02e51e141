"""Hot leads end to end (issue 17): a buying signal alerts the rep at once with a reply to /send and
a stage, holds the countdown until the rep decides, and nudges once if the rep stays silent."""

from __future__ import annotations

from datetime import datetime, timedelta

from storage.models import Event, ScheduledMessage
from tests.conftest import MONDAY_10AM, SHANGHAI, make_config
from tests.harness import Harness


def local(message: dict[str, str]) -> datetime:
    return datetime.fromisoformat(message["at"]).astimezone(SHANGHAI)


def alerts(sim: Harness) -> list[dict[str, str]]:
    return sim.sent("signal", "console")


async def test_buying_signal_alerts_the_rep_with_a_reply_and_a_stage(sim: Harness) -> None:
    await sim.customer_in_chat()
    card = (await sim.customer("c1")).id
    await sim.customer_says("c1", "什么时候能提车？")
    [alert] = alerts(sim)
    assert alert["signal"] == "buying_signal"
    text = alert["text"]
    assert text.startswith(f"【张三 #{card} · 潜在】想成交了（热线索）") and "“什么时候能提车？”" in text
    assert "为什么：TA问到了交付的安排" in text
    # numbers go on after the coaching card of the first reply (1-3)
    assert "发 /send 4 发出这句" in text and f"/stage 意向 @#{card}" in text
    assert "buying_signal" not in text and "倒计时" not in text  # no countdown to hold
    # the reading is logged like the others (/wrong corrects it), and the hot lead with its offer
    [reading] = await sim.rows(Event, Event.kind == "signal")
    assert reading.data["signal"] == "buying_signal"
    [hot] = await sim.rows(Event, Event.kind == "hot_lead")
    assert hot.data["scripts"] == ["buying-signal-first-order"]
    # the one next step works: /send 4 sends the offered reply
    await sim.rep(f"/send 4 @#{card}")
    await sim.advance(timedelta(minutes=1))
    [reply] = sim.sent("reply", "c1")
    assert "我这就帮您把时间和名额确认下来" in reply["text"]
    # the rep answered: no nudge
    await sim.advance(timedelta(hours=2))
    assert len(alerts(sim)) == 1


async def test_a_countdown_waits_for_the_reps_decision(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep("/countdown @张三 11-30 20:00")
    await sim.customer_says("c1", "怎么付定金？")
    [alert] = alerts(sim)
    assert "TA的倒计时已暂停（7 条），等你决定：重新 /countdown 继续，成交了就 /order；" in alert["text"]
    assert "判断错了发 /wrong 购买信号 @#1，倒计时照常。" in alert["text"]
    rows = await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")
    assert {r.status for r in rows} == {"paused"}  # held, not cancelled
    await sim.advance(timedelta(days=3))
    assert sim.sent("countdown", "c1") == []
    # the rep decides: a new countdown goes out again
    await sim.rep("/countdown @张三 11-30 20:00")
    await sim.advance(timedelta(days=4))
    assert [local(m).strftime("%m-%d %H:%M") for m in sim.sent("countdown", "c1")][:1] == ["11-27 20:00"]


async def test_order_ends_a_held_countdown(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep("/countdown @张三 11-30 20:00")
    await sim.customer_says("c1", "我要下单")
    await sim.rep("/order @张三 SUV")
    rows = await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")
    assert {r.status for r in rows} == {"cancelled"}


async def test_one_nudge_when_the_rep_stays_silent(sim: Harness) -> None:
    await sim.customer_in_chat()
    said_at = sim.clock.now()
    await sim.customer_says("c1", "什么时候能提车？")
    await sim.advance(timedelta(hours=3))
    _, nudge = alerts(sim)
    assert nudge["signal"] == "buying_signal"
    assert local(nudge) == said_at + timedelta(minutes=15)
    assert "的热线索“什么时候能提车？”已经等了 15 分钟，你还没回复TA" in nudge["text"]
    await sim.advance(timedelta(days=1))
    assert len(alerts(sim)) == 2


async def test_the_rep_typing_in_the_chat_answers_it(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.customer_says("c1", "什么时候能提车？")
    await sim.rep_types("这周六就可以，我帮您约时间", in_chat="c1")
    await sim.advance(timedelta(hours=1))
    assert len(alerts(sim)) == 1


async def test_an_order_answers_it(sim: Harness) -> None:
    """/order is the rep's decision on a hot lead: "你还没回复TA" 15 minutes after it is noise."""
    await sim.customer_in_chat()
    await sim.customer_says("c1", "什么时候能提车？")
    await sim.rep("/order @张三 SUV")
    await sim.advance(timedelta(hours=1))
    assert len(alerts(sim)) == 1


async def test_a_nudge_outside_working_hours_waits_for_the_morning(db_url: str) -> None:
    evening = datetime(2026, 11, 23, 20, 50, tzinfo=SHANGHAI)
    async with Harness(make_config(), evening, database_url=db_url) as sim:
        await sim.customer_in_chat()
        await sim.customer_says("c1", "什么时候能提车？")
        await sim.advance(timedelta(hours=14))
        alert, nudge = alerts(sim)
        assert local(alert) < evening + timedelta(minutes=5)
        assert local(nudge) == datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI)
        assert "已经等了 12 小时" in nudge["text"]


async def test_nudge_minutes_are_configured(db_url: str) -> None:
    config = make_config({"signals": {"hot_lead_nudge_minutes": 40}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.customer_in_chat()
        said_at = sim.clock.now()
        await sim.customer_says("c1", "什么时候能提车？")
        await sim.advance(timedelta(hours=1))
        assert local(alerts(sim)[1]) == said_at + timedelta(minutes=40)


async def test_an_objection_and_a_buying_signal_at_once(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.customer_says("c1", "再让五百我立马转账")
    [suggestion] = sim.sent("suggestion", "console")
    [alert] = alerts(sim)
    # the suggestion numbers the replies; the alert points at it instead of offering its own
    assert "上面的话术建议" in alert["text"] and "4. " not in alert["text"]
    await sim.rep("/send 4 @张三")  # 1-3: the coaching card of the first reply
    await sim.advance(timedelta(minutes=1))
    [reply] = sim.sent("reply", "c1")
    assert reply["text"].splitlines()[0] in suggestion["text"]


async def test_a_replayed_message_alerts_once(sim: Harness) -> None:
    await sim.customer_in_chat()
    message_id = sim.puppet.customer_says(sim.contact_id("c1"), "什么时候能提车？")
    await sim.bot.settle()
    sim.puppet.customer_says(sim.contact_id("c1"), "什么时候能提车？", message_id=message_id)
    await sim.advance(timedelta(minutes=1))
    assert len(alerts(sim)) == 1


async def test_wrong_on_a_misread_buying_signal_lets_the_countdown_go_on(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep("/countdown @张三 11-30 20:00")
    await sim.customer_says("c1", "什么时候能提车？")
    answer = await sim.rep("/wrong 购买信号 @张三")
    assert "不是“购买信号”，TA的倒计时继续（7 条）" in answer
    rows = await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")
    assert {r.status for r in rows} == {"pending"}
    await sim.advance(timedelta(hours=11))
    assert len(sim.sent("countdown", "c1")) == 1
