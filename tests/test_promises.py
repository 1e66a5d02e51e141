"""Promises kept end to end (issue 17): 回复“礼物” after the welcome delivers the gift once; 回复“1”
after a countdown step that asked for it tells the customer the rep will confirm and alerts the rep
as a hot lead; nothing but that answer reaches a customer in quiet hours."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.services.promises import promises, replied_with
from storage.models import Event, ScheduledMessage
from tests.conftest import SHANGHAI, make_config
from tests.harness import Harness


def local(message: dict[str, str]) -> datetime:
    return datetime.fromisoformat(message["at"]).astimezone(SHANGHAI)


def test_what_counts_as_a_promise_and_its_answer() -> None:
    assert promises("送您一份见面礼，回复“礼物”即可领取。", "礼物")
    assert promises('回复"1"我马上安排', "1") and promises("回复1我马上安排", "1")
    assert not promises("回复10领取", "1") and not promises("有任何问题随时问我", "1")
    assert replied_with("礼物！", ["礼物"]) == "礼物" and replied_with("我要礼物", ["礼物"]) == "礼物"
    assert replied_with("１", ["1"]) == "1" and replied_with(" 1。", ["1"]) == "1"
    assert replied_with("11", ["1"]) is None and replied_with("礼物是什么东西呀能退吗", ["礼物"]) is None


async def test_gift_is_delivered_once_after_the_welcome(sim: Harness) -> None:
    await sim.new_customer()
    [welcome] = sim.sent("welcome", "c1")
    assert "回复“礼物”即可领取" in welcome["text"]
    await sim.customer_says("c1", "礼物")
    [gift, gift_file] = sim.sent("auto_reply", "c1")
    assert "《2026购车避坑指南》电子版" in gift["text"] and "张三" in gift["text"]
    assert "attachment" not in gift  # the text, then the file the template attaches
    assert gift_file["attachment"] == {"type": "file", "name": "购车避坑指南.pdf"}
    assert sim.sent("signal") == []  # the gift needs no rep
    await sim.customer_says("c1", "礼物？")
    await sim.advance(timedelta(minutes=5))
    assert len(sim.sent("auto_reply", "c1")) == 2
    [triggered] = await sim.rows(Event, Event.kind == "hook_triggered")
    assert triggered.data["hook"] == "gift"


async def test_a_promise_expires_after_the_window(db_url: str) -> None:
    config = make_config({"hooks": {"window_hours": 24.0}})
    monday = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
    async with Harness(config, monday, database_url=db_url) as sim:
        await sim.new_customer()
        # past the window of the welcome and of the T+1 follow-up that repeats its promise
        await sim.advance(timedelta(days=2, hours=6))
        await sim.customer_says("c1", "礼物")
        assert sim.sent("auto_reply") == []


async def test_one_after_a_countdown_step_that_asked_for_it(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep("/countdown @张三 今天 14:00")  # the 3h step (11:00) asks 回复“1”我马上安排
    await sim.advance(timedelta(hours=1, minutes=5))
    [step] = sim.sent("countdown", "c1")
    assert "回复“1”我马上安排" in step["text"]
    await sim.customer_says("c1", "1")
    [answer] = sim.sent("auto_reply", "c1")
    assert "我这就帮您安排" in answer["text"]
    [alert] = sim.sent("signal", "console")
    assert alert["signal"] == "buying_signal"
    assert "TA回复了“1”，要你马上安排" in alert["text"] and "TA的倒计时已暂停（3 条）" in alert["text"]
    await sim.advance(timedelta(hours=4))
    assert len(sim.sent("countdown", "c1")) == 1  # held for the rep
    await sim.customer_says("c1", "1")
    assert len(sim.sent("auto_reply", "c1")) == 1  # one answer per promise


async def test_one_after_a_step_that_did_not_ask_is_an_ordinary_message(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep("/countdown @张三 11-30 20:00")
    await sim.advance(timedelta(hours=10, minutes=5))  # the 7d step (20:00) asks for nothing
    [step] = sim.sent("countdown", "c1")
    assert "回复“1”" not in step["text"]
    await sim.customer_says("c1", "1")
    assert sim.sent("auto_reply") == [] and sim.sent("signal") == []
    rows = await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")
    assert "paused" not in {r.status for r in rows}


async def test_in_quiet_hours_only_the_answer_goes_out(db_url: str) -> None:
    afternoon = datetime(2026, 11, 23, 16, 0, tzinfo=SHANGHAI)
    config = make_config({"countdown": {"offsets": ["3h"]}})  # one step, while the rep is at work
    async with Harness(config, afternoon, database_url=db_url) as sim:
        await sim.customer_in_chat()
        await sim.rep("/countdown @张三 今天 23:00")  # 20:00 (3h): 最后3小时, asks for 回复“1”
        await sim.advance(timedelta(hours=6, minutes=29))  # 22:30: quiet hours, rep off work
        [step] = sim.sent("countdown", "c1")
        assert "回复“1”我马上安排" in step["text"]
        await sim.customer_says("c1", "1")
        [answer] = sim.sent("auto_reply", "c1")
        assert local(answer).strftime("%H:%M") == "22:30"
        assert "明天 09:00上线后第一时间跟您确认" in answer["text"]
        before = len(sim.texts_to(sim.contact_id("c1")))
        await sim.advance(timedelta(hours=11))  # until 09:30 the next morning
        assert len(sim.texts_to(sim.contact_id("c1"))) == before  # nothing pushed meanwhile
        # the rep is nudged when back at work
        assert local(sim.sent("signal", "console")[-1]).strftime("%m-%d %H:%M") == "11-24 09:00"


async def test_the_gift_the_follow_up_reminds_of_is_delivered_too(db_url: str) -> None:
    """The T+1 follow-up repeats the welcome's promise (回复“礼物”就能领取): a gift rule lists both."""
    config = make_config({"hooks": {"window_hours": 24.0}})
    monday = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
    async with Harness(config, monday, database_url=db_url) as sim:
        await sim.new_customer()
        await sim.advance(timedelta(days=1, hours=2))  # past the welcome's window, T+1 went out
        [followup] = sim.sent("followup", "c1")
        assert "回复“礼物”" in followup["text"]
        await sim.customer_says("c1", "礼物")
        [gift, _gift_file] = sim.sent("auto_reply", "c1")
        assert "见面礼" in gift["text"]
