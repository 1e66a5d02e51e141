"""Referrals and KOC candidates end to end (issue 17): a referral alerts the rep with a thank-you
to /send and is recorded; repeat buyers, referrers and engaged buyers are listed by /koc until
/stage koc promotes them (whatever the business calls its KOC stage)."""

from __future__ import annotations

from datetime import datetime, timedelta

from storage.models import Event
from tests.conftest import SHANGHAI, make_config
from tests.harness import Harness

REFERRAL = "我同事也想了解，我把她推给你"


def alerts(sim: Harness) -> list[dict[str, str]]:
    return sim.sent("signal", "console")


async def test_a_referral_alerts_the_rep_with_a_thank_you_to_send(sim: Harness) -> None:
    await sim.customer_in_chat()
    card = (await sim.customer("c1")).id
    await sim.customer_says("c1", REFERRAL)
    [alert] = alerts(sim)
    assert alert["signal"] == "referral"
    text = alert["text"]
    assert text.startswith(f"【张三 #{card} · 潜在】在给你介绍新客户（转介绍）：")
    # numbers go on after the coaching card of the first reply (1-3)
    assert f"“{REFERRAL}”" in text and "发 /send 4 发出这句" in text
    assert "4. 谢谢您帮我介绍朋友！" in text
    assert f"已记下这次转介绍。TA已是KOC候选（转介绍1次），可以 /stage KOC @#{card}。" in text
    assert "referral" not in text
    [recorded] = await sim.rows(Event, Event.kind == "referral")
    assert recorded.customer_id == card and recorded.text == REFERRAL
    assert recorded.data["scripts"] == ["referral-general"]
    # the one next step works: /send 4 thanks the customer
    await sim.rep("/send 4")
    await sim.advance(timedelta(minutes=1))
    [reply] = sim.sent("reply", "c1")
    assert reply["text"].startswith("谢谢您帮我介绍朋友！")


async def test_a_buyer_gets_the_customers_thank_you(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep("/order @张三 SUV")
    await sim.customer_says("c1", "我朋友也想买一台，我介绍他来找你")
    [alert] = alerts(sim)
    assert "朋友交给我您放心" in alert["text"] and "· 下单】" in alert["text"]


async def test_the_thank_you_takes_the_next_suggestion_number(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    await sim.customer_says("c1", "太贵了")
    [suggestion] = sim.sent("suggestion", "console")
    last = max(int(line.split(".")[0]) for line in suggestion["text"].splitlines() if line[:1].isdigit())
    await sim.customer_says("c2", REFERRAL)
    [alert] = alerts(sim)
    assert f"发 /send {last + 1} 发出这句" in alert["text"]
    await sim.rep(f"/send {last + 1}")
    await sim.advance(timedelta(minutes=1))
    assert sim.sent("reply", "c2") and not sim.sent("reply", "c1")


async def test_a_replayed_referral_is_recorded_and_alerted_once(sim: Harness) -> None:
    await sim.customer_in_chat()
    message_id = sim.puppet.customer_says(sim.contact_id("c1"), REFERRAL)
    await sim.bot.settle()
    sim.puppet.customer_says(sim.contact_id("c1"), REFERRAL, message_id=message_id)
    await sim.advance(timedelta(minutes=1))
    assert len(alerts(sim)) == 1
    assert len(await sim.rows(Event, Event.kind == "referral")) == 1


async def test_an_opt_out_is_no_referral(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.customer_says("c1", "以后不要再给我发消息了")
    assert alerts(sim) == [] and await sim.rows(Event, Event.kind == "referral") == []


async def test_koc_lists_repeat_buyers_referrers_and_engaged_buyers(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"), ("c2", "李四"), ("c3", "王五"), ("c4", "赵六"))
    assert (await sim.rep("/koc")).startswith("目前没有KOC候选")
    await sim.rep("/order @张三 SUV")
    await sim.rep("/order @张三 脚垫 确认")  # a repeat order (the same day: confirmed)
    await sim.customer_says("c2", REFERRAL)
    await sim.rep("/order @王五 SUV")
    for n in range(15):  # sustained engagement after buying
        await sim.customer_says("c3", f"第{n}个问题：保养怎么预约")
        await sim.advance(timedelta(hours=12))
    await sim.rep("/order @赵六 SUV")  # one order, quiet: not a candidate
    listing = await sim.rep("/koc")
    lines = listing.splitlines()
    assert lines[0] == "KOC候选（3 位）：", listing
    assert lines[1] == "1. 张三 #1 · 复购 · 下单2次"
    assert lines[2] == "2. 李四 #2 · 潜在 · 转介绍1次"
    assert lines[3] == "3. 王五 #3 · 下单 · 近14天发了15条消息"
    assert lines[4] == "设为KOC：发 /stage KOC @#编号，如 /stage KOC @#1"
    assert "赵六" not in listing
    # /stage koc promotes: a KOC is no longer a candidate
    assert (await sim.rep("/stage koc @张三")).endswith("阶段：复购 → KOC")
    assert "张三" not in await sim.rep("/koc")


async def test_koc_rules_are_configured(db_url: str) -> None:
    config = make_config({"koc": {"min_orders": 0, "min_referrals": 2}})
    async with Harness(config, datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI), database_url=db_url) as sim:
        await sim.with_customers(("c1", "张三"), ("c2", "李四"))
        await sim.rep("/order @张三 SUV")
        await sim.rep("/order @张三 脚垫 确认")
        await sim.customer_says("c2", REFERRAL)
        assert (await sim.rep("/koc")).startswith("目前没有KOC候选")
        await sim.customer_says("c2", "推荐朋友来有奖励吗")
        assert "1. 李四 #2 · 潜在 · 转介绍2次" in await sim.rep("/koc")


async def test_stage_koc_follows_the_pipeline_mapping(db_url: str) -> None:
    stages = [
        {"key": "consult", "label": "咨询", "steps": ["stranger", "potential"]},
        {"key": "trial", "label": "试听", "steps": ["intent"]},
        {"key": "enrolled", "label": "报名", "steps": ["ordered"]},
        {"key": "renewed", "label": "续费", "steps": ["repeat"]},
        {"key": "ambassador", "label": "转介绍", "steps": ["koc"]},
    ]
    config = make_config(
        {
            "stages": stages,
            "pipeline": {"on_first_reply": "", "order_stage": "enrolled", "repeat_stage": "renewed"},
            "signals": {"hot_lead_stage": "trial"},
            "digest": {"at_risk_from_stage": "trial"},
        }
    )
    async with Harness(config, datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI), database_url=db_url) as sim:
        await sim.customer_in_chat()
        await sim.customer_says("c1", REFERRAL)
        [alert] = alerts(sim)
        assert "可以 /stage 转介绍 @#1" in alert["text"]
        assert "设为KOC：发 /stage 转介绍 @#编号，如 /stage 转介绍 @#1" in await sim.rep("/koc")
        assert (await sim.rep("/stage koc @张三")).endswith("阶段：咨询 → 转介绍")
        assert (await sim.rep("/koc")).startswith("目前没有KOC候选")


async def test_wrong_on_a_misread_referral_withdraws_it(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.customer_says("c1", REFERRAL)
    assert "1. 张三 #1" in await sim.rep("/koc")
    answer = await sim.rep("/wrong 转介绍 @张三")
    assert answer.endswith(f"已记录：“{REFERRAL}”不是“转介绍”，这次不再计入转介绍和KOC候选")
    assert (await sim.rep("/koc")).startswith("目前没有KOC候选")
    assert await sim.rows(Event, Event.kind == "referral") == []


async def test_label_records_a_missed_referral(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.customer_says("c1", "我跟老王说了你这儿不错")  # read as nothing
    answer = await sim.rep("/label 转介绍 @张三")
    assert answer.endswith("下次训练模型时会用上，已记为一次转介绍")
    assert "1. 张三 #1 · 潜在 · 转介绍1次" in await sim.rep("/koc")
