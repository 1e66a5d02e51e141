"""Reps correct the reader (/wrong, /label): stored with the message, counted in the digest, and
trained on with `salesbot objections train --with-feedback`; soft opt-outs hold pushes only."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from bot.objections import tools
from bot.objections.corpus import load_corpus
from bot.objections.model import MessageModel
from bot.services.feedback import load_corrections
from storage.models import Event, ScheduledMessage
from tests.conftest import MONDAY_10AM, make_config, portable_config_text, write_config
from tests.harness import Harness
from tests.test_reader import small_corpus


async def test_wrong_and_label_round_trip_into_a_business_model(tmp_path: Path, db_url: str) -> None:
    async with Harness(make_config(), MONDAY_10AM, database_url=db_url) as sim:
        await sim.new_customer()
        await sim.rep_types("/wrong @张三")
        assert "还没有可纠正的识别结果" in sim.last_reply()
        await sim.customer_says("c1", "太贵了")
        assert sim.sent("suggestion")
        await sim.rep_types("/wrong 转介绍")
        assert "漏掉的信号请用 /label" in sim.last_reply()
        await sim.rep_types("/纠正 预算")
        assert "“太贵了”应为“预算”（原判“价格”）" in sim.last_reply()

        await sim.customer_says("c1", "荷包要瘦一圈了")
        assert len(sim.sent("suggestion")) == 1, "the model reads no objection here"
        await sim.rep_types("/label")
        assert sim.last_reply().endswith("用法：/label <顾虑|信号>")
        await sim.rep_types("/label 心疼")
        assert "不认识“心疼”" in sim.last_reply() and "转介绍" in sim.last_reply()
        await sim.rep_types("/label 价格")
        assert "“荷包要瘦一圈了”标为“价格”" in sim.last_reply()
        await sim.rep_types("/标注 转介绍")

        corrections = await sim.rows(Event, Event.kind == "correction")
        assert [(e.text, e.data["via"], e.data["objection"], e.data["signals"]) for e in corrections] == [
            ("太贵了", "wrong", "budget", []),
            ("荷包要瘦一圈了", "label", "price", []),
            ("荷包要瘦一圈了", "label", "price", ["referral"]),  # builds on the earlier correction
        ]
        assert corrections[0].data["was"] == {"objection": "price", "signals": []}

        await sim.rep_types("/digest")
        assert "识别纠正：3" in sim.sent("digest")[-1]["text"]

        learned = {m.text: (m.objection, m.signals) for m in await load_corrections(sim.bot.db)}
        latest = {"太贵了": ("budget", ()), "荷包要瘦一圈了": ("price", ("referral",))}
        assert learned == latest, "latest wins"

        # the business trains its own model with these corrections
        await sim.rep_types("/label 价格")
    config = write_config(tmp_path, portable_config_text().replace("sqlite:///data/salesbot.db", db_url))
    corpus = small_corpus(tmp_path / "corpus")
    before = MessageModel().fit(load_corpus(corpus))
    assert before.predict_one("荷包要瘦一圈了").objection != "price"
    out = tmp_path / "own-model"
    assert await tools.train(str(config), str(out), with_feedback=True, corpus=str(corpus)) == 0
    card = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert card["feedback"] == 2 and card["messages"] == 272
    assert MessageModel.load(out).predict_one("荷包要瘦一圈了").objection == "price"


async def test_a_soft_opt_out_holds_countdowns_and_follow_ups_not_aftercare(sim: Harness) -> None:
    await sim.new_customer()
    await sim.rep_types("/order 车 @张三")
    await sim.rep_types("/countdown +5d 复购礼")
    assert await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")
    await sim.customer_says("c1", "这类通知别发那么勤")
    alert = sim.sent("alert")[-1]["text"]
    assert alert.startswith("【张三 #1】说“这类通知别发那么勤”，不想被频繁催促：已停止倒计时和跟进提醒")
    assert "售后关怀照常" in alert and "/wrong 别催了 @#1" in alert and "\n" not in alert
    countdown = await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")
    assert {r.status for r in countdown} == {"paused"}
    aftercare = await sim.rows(ScheduledMessage, ScheduledMessage.kind == "aftercare")
    assert {r.status for r in aftercare} == {"pending"}

    await sim.advance(timedelta(days=3, hours=1))
    assert sim.sent("aftercare"), "aftercare is service, it goes on"
    assert not sim.sent("countdown")

    await sim.rep_types("/wrong 别催了")
    assert "已恢复对TA的倒计时和跟进提醒" in sim.last_reply()
    statuses = {r.status for r in await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")}
    assert "paused" not in statuses and "pending" in statuses
    await sim.advance(timedelta(days=2))
    assert sim.sent("countdown")


async def test_a_new_countdown_overrides_a_soft_opt_out_and_says_so(sim: Harness) -> None:
    await sim.new_customer()
    await sim.customer_says("c1", "这类通知别发那么勤")
    await sim.rep_types("/countdown +3d 限时礼 @张三")
    assert "客户之前说过不想被频繁催促" in sim.last_reply()
    assert {r.status for r in await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")} == {
        "pending"
    }


async def test_ending_a_conversation_pauses_nothing(sim: Harness) -> None:
    await sim.new_customer()
    await sim.rep_types("/countdown +3d 限时礼 @张三")
    await sim.customer_says("c1", "不打扰你下班了，明天聊")
    assert not sim.sent("alert")
    assert {r.status for r in await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")} == {
        "pending"
    }


async def test_resume_lifts_a_soft_opt_out(sim: Harness) -> None:
    await sim.new_customer()
    await sim.rep_types("/countdown +3d 限时礼 @张三")
    await sim.customer_says("c1", "这类通知别发那么勤")
    await sim.rep_types("/resume")
    assert "已恢复自动消息" in sim.last_reply()
    assert {r.status for r in await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")} == {
        "pending"
    }


async def test_wrong_after_an_opt_out_keeps_the_pause_until_resume(sim: Harness) -> None:
    await sim.new_customer()
    await sim.customer_says("c1", "退订")
    await sim.rep_types("/wrong @张三")
    assert "自动消息仍暂停，确认要恢复请发 /resume" in sim.last_reply()
    [correction] = await sim.rows(Event, Event.kind == "correction")
    assert "opt_out" not in correction.data["signals"]


async def test_wrong_names_the_reading_when_a_message_carried_two(sim: Harness) -> None:
    await sim.new_customer()
    await sim.rep_types("/countdown +3d 限时礼 @张三")
    await sim.customer_says("c1", "最近手头紧 别老催我了")
    assert sim.sent("suggestion") and sim.sent("alert"), "an objection and a soft opt-out"
    await sim.rep_types("/wrong 别催了")
    assert "不是“别催了”，已恢复" in sim.last_reply()
    [correction] = await sim.rows(Event, Event.kind == "correction")
    assert correction.data["objection"] == "budget" and "opt_out_soft" not in correction.data["signals"]
    assert {r.status for r in await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")} == {
        "pending"
    }
    await sim.rep_types("/wrong 退订")
    assert "最近没有被识别为“退订”" in sim.last_reply()


async def test_corrections_of_one_message_build_on_each_other(sim: Harness) -> None:
    await sim.new_customer()
    await sim.customer_says("c1", "太贵了")
    await sim.rep_types("/wrong 无顾虑 @张三")
    await sim.rep_types("/label 转介绍")
    await sim.rep_types("/label 购买信号")
    learned = {m.text: (m.objection, m.signals) for m in await load_corrections(sim.bot.db)}
    assert learned == {"太贵了": (None, ("referral", "buying_signal"))}


async def test_wrong_while_all_automation_is_paused_says_so(sim: Harness) -> None:
    await sim.new_customer()
    await sim.customer_says("c1", "这类通知别发那么勤")
    await sim.rep_types("/pause @张三")
    await sim.rep_types("/wrong 别催了")
    assert "仍整体暂停，需要恢复请发 /resume" in sim.last_reply()
