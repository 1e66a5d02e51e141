"""Customer lifecycle (issue 18): states from activity and stage, the daily sweep at the thresholds
(in local calendar days, across DST), one reactivation card per silence with playbook scripts the
rep may /send, nothing sent to the customer by itself, /info and the digest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.config import Config, load_config
from bot.domain.lifecycle import (
    Activity,
    Lifecycle,
    LifecycleRules,
    lifecycle_state,
    newly_dormant,
    turns_dormant_at,
)
from storage.models import Customer, Event
from tests.conftest import ROOT, SHANGHAI, make_config
from tests.harness import Harness

BERLIN = ZoneInfo("Europe/Berlin")
# a Friday morning before the sweep (10:00); summer time begins on Sunday 29 March 2026
SPRING = datetime(2026, 3, 27, 9, 0, tzinfo=BERLIN)
# a Thursday; summer time ends on Sunday 25 October 2026
AUTUMN = datetime(2026, 10, 1, 9, 0, tzinfo=BERLIN)
RULES = LifecycleRules()


@pytest.fixture
def config() -> Config:
    return make_config({"timezone": "Europe/Berlin"})


@pytest.fixture
async def sim(config: Config, db_url: str) -> AsyncIterator[Harness]:
    async with Harness(config, SPRING, database_url=db_url) as simulation:
        yield simulation


async def advance_to(sim: Harness, when: datetime) -> None:
    await sim.advance(when - sim.clock.now())


def cards(sim: Harness) -> list[dict[str, str]]:
    return sim.sent("reactivation", "console")


async def state(sim: Harness, handle: str = "c1") -> str:
    return (await sim.customer(handle)).lifecycle


# -- the pure rule ----------------------------------------------------------------------------------


def test_silence_counts_local_calendar_days_across_the_dst_change() -> None:
    # last message late on Saturday 28 March (23:30 CET = 22:30 UTC); clocks go forward that night
    said = datetime(2026, 3, 28, 23, 30, tzinfo=BERLIN)
    before_order = Activity(added_at=said - timedelta(days=10), last_inbound_at=said, ordered=False)
    dormant_from = datetime(2026, 4, 4, 0, 0, tzinfo=BERLIN)  # 7 local days later, now in CEST
    assert turns_dormant_at(before_order, RULES, BERLIN) == dormant_from
    assert dormant_from.astimezone(UTC) == datetime(2026, 4, 3, 22, 0, tzinfo=UTC)
    just_before = dormant_from - timedelta(minutes=1)
    assert lifecycle_state(just_before, before_order, RULES, BERLIN) is Lifecycle.GROWING
    assert lifecycle_state(dormant_from, before_order, RULES, BERLIN) is Lifecycle.DORMANT
    # after the order: 30 days, across the autumn change too
    bought = datetime(2026, 10, 1, 0, 10, tzinfo=BERLIN)
    after_order = Activity(added_at=bought - timedelta(days=40), last_inbound_at=bought, ordered=True)
    dormant_from = datetime(2026, 10, 31, 0, 0, tzinfo=BERLIN)
    assert (
        lifecycle_state(dormant_from - timedelta(minutes=1), after_order, RULES, BERLIN) is Lifecycle.MATURE
    )
    assert lifecycle_state(dormant_from, after_order, RULES, BERLIN) is Lifecycle.DORMANT
    lost = datetime(2026, 12, 30, 0, 0, tzinfo=BERLIN)  # 90 days
    assert lifecycle_state(lost - timedelta(minutes=1), after_order, RULES, BERLIN) is Lifecycle.DORMANT
    assert lifecycle_state(lost, after_order, RULES, BERLIN) is Lifecycle.LOST


def test_new_growing_and_lost_by_removal() -> None:
    added = datetime(2026, 3, 27, 9, 0, tzinfo=BERLIN)
    fresh = Activity(added_at=added, last_inbound_at=None, ordered=False)
    assert lifecycle_state(added + timedelta(days=2), fresh, RULES, BERLIN) is Lifecycle.NEW
    talking = Activity(added_at=added, last_inbound_at=added + timedelta(days=3), ordered=False)
    assert lifecycle_state(added + timedelta(days=3), talking, RULES, BERLIN) is Lifecycle.GROWING
    gone = Activity(added_at=added, last_inbound_at=added, ordered=True, deleted=True)
    assert lifecycle_state(added, gone, RULES, BERLIN) is Lifecycle.LOST


def test_a_card_only_for_a_fresh_dormancy() -> None:
    said = datetime(2026, 3, 27, 9, 0, tzinfo=BERLIN)
    quiet = Activity(added_at=said, last_inbound_at=said, ordered=False)
    day = datetime(2026, 4, 3, 10, 0, tzinfo=BERLIN)  # day 7
    assert not newly_dormant(day - timedelta(days=1), quiet, RULES, BERLIN)
    assert newly_dormant(day, quiet, RULES, BERLIN)
    assert newly_dormant(day + timedelta(days=2), quiet, RULES, BERLIN)  # a sweep missed while down
    assert not newly_dormant(day + timedelta(days=3), quiet, RULES, BERLIN)  # long dormant already


# -- the sweep and the card -------------------------------------------------------------------------


async def test_dormant_before_the_order_exactly_at_the_threshold_with_one_card(sim: Harness) -> None:
    await sim.customer_in_chat()  # added and wrote on Friday 27 March: silent since then
    assert await state(sim) == "new"
    await advance_to(sim, datetime(2026, 3, 30, 10, 0, tzinfo=BERLIN))
    assert await state(sim) == "growing"
    # day 7 at the sweep's local time (10:00 CEST, 08:00 UTC), after the DST change
    await advance_to(sim, datetime(2026, 4, 3, 9, 59, tzinfo=BERLIN))
    assert await state(sim) == "growing" and cards(sim) == []
    await advance_to(sim, datetime(2026, 4, 3, 10, 0, tzinfo=BERLIN))
    assert await state(sim) == "dormant"
    [card] = cards(sim)
    assert datetime.fromisoformat(card["at"]).astimezone(UTC) == datetime(2026, 4, 3, 8, 0, tzinfo=UTC)
    customer_id = (await sim.customer("c1")).id
    text = card["text"]
    assert text.startswith(
        f"【张三 #{customer_id} · 潜在】已经 7 天没有消息了（最后一次是3月27日），转为「休眠」客户。"
    )
    assert "不会自动发送" in text and "/send" in text
    assert [line[:2] for line in text.splitlines()[2:]] == ["1.", "2.", "3."]
    assert "新款到店" in text and "限时补贴" in text  # the account's vertical (cars) first
    for internal in ("reactivat", "dormant", "potential", "{{", "None"):
        assert internal not in text
    # later sweeps: still dormant, never a second card for the same silence
    await sim.advance(timedelta(days=5))
    assert len(cards(sim)) == 1
    [turned] = [
        e for e in await sim.rows(Event, Event.kind == "lifecycle_changed") if e.data["to"] == "dormant"
    ]
    assert turned.data["silent_since"] == "2026-03-27"
    # nothing went to the customer by itself: the welcome only
    assert [m["kind"] for m in sim.output if m["to"] == "c1"] == ["welcome"]


async def test_a_message_just_after_local_midnight_counts_for_the_local_day(sim: Harness) -> None:
    await sim.new_customer()
    # 00:30 on Saturday 28 March in Berlin is still Friday 27 March in UTC
    await advance_to(sim, datetime(2026, 3, 28, 0, 30, tzinfo=BERLIN))
    await sim.customer_says("c1", "你好")
    await advance_to(sim, datetime(2026, 4, 3, 10, 0, tzinfo=BERLIN))
    assert await state(sim) == "growing" and cards(sim) == []
    await advance_to(sim, datetime(2026, 4, 4, 10, 0, tzinfo=BERLIN))
    assert await state(sim) == "dormant" and "最后一次是3月28日" in cards(sim)[0]["text"]


async def test_a_reactivation_card_offers_no_script_written_for_a_reply_or_a_fresh_step(sim: Harness) -> None:
    """A script's moment: one that thanks for a reply or greets a step just begun never follows
    a silence."""
    playbook = sim.bot.lifecycle.playbook
    shipped = playbook.script("cars-reactivate-new-model")
    assert shipped is not None
    playbook._scripts[playbook._scripts.index(shipped)] = replace(shipped, moment="reply")
    await sim.customer_in_chat()
    await advance_to(sim, datetime(2026, 4, 3, 10, 0, tzinfo=BERLIN))
    [card] = cards(sim)
    assert "新款到店" not in card["text"] and "限时补贴" in card["text"]


async def test_a_message_wakes_a_dormant_customer_and_a_new_silence_gets_a_new_card(sim: Harness) -> None:
    await sim.customer_in_chat()
    await advance_to(sim, datetime(2026, 4, 3, 10, 0, tzinfo=BERLIN))
    assert await state(sim) == "dormant"
    await sim.customer_says("c1", "最近有新车吗")
    assert await state(sim) == "growing"  # at once, not at the next sweep
    await advance_to(sim, datetime(2026, 4, 10, 10, 0, tzinfo=BERLIN))
    assert await state(sim) == "dormant" and len(cards(sim)) == 2
    assert "最后一次是4月3日" in cards(sim)[1]["text"]


async def test_dormant_after_the_order_at_30_days_across_the_autumn_change(
    config: Config, db_url: str
) -> None:
    async with Harness(config, AUTUMN, database_url=db_url) as sim:
        await sim.customer_in_chat()
        await sim.rep("/order @张三 SUV")
        assert await state(sim) == "mature"
        await advance_to(sim, datetime(2026, 10, 30, 10, 0, tzinfo=BERLIN))  # day 29
        assert await state(sim) == "mature" and cards(sim) == []
        await advance_to(sim, datetime(2026, 10, 31, 9, 59, tzinfo=BERLIN))
        assert cards(sim) == []
        await advance_to(sim, datetime(2026, 10, 31, 10, 0, tzinfo=BERLIN))  # 10:00 CET = 09:00 UTC
        assert await state(sim) == "dormant"
        [card] = cards(sim)
        assert datetime.fromisoformat(card["at"]).astimezone(UTC) == datetime(2026, 10, 31, 9, 0, tzinfo=UTC)
        # an owner gets care, not a sales offer
        assert "· 下单】已经 30 天没有消息了" in card["text"] and "车主关怀" in card["text"]
        assert "限时补贴" not in card["text"] and "新款到店" not in card["text"]
        assert not sim.sent("reply", "c1")


async def test_card_scripts_suit_the_stage(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")  # never writes: a stranger
    await sim.customer_in_chat("c2", "李四")
    await sim.rep("/order @李四")
    await advance_to(sim, datetime(2026, 4, 3, 10, 0, tzinfo=BERLIN))
    [stranger] = cards(sim)
    assert "· 陌生】" in stranger["text"] and "购车资料" in stranger["text"]
    assert "限时补贴" not in stranger["text"]  # no offer to someone who never engaged
    assert await state(sim, "c2") == "mature"


async def test_send_n_from_a_card_goes_to_its_customer(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    await sim.customer_says("c1", "你好")
    await advance_to(sim, datetime(2026, 4, 3, 9, 0, tzinfo=BERLIN))
    # 李四's objection an hour before the sweep: its scripts are 1-3, the card's follow on
    await sim.customer_says("c2", "太贵了")
    await advance_to(sim, datetime(2026, 4, 3, 10, 0, tzinfo=BERLIN))
    [card] = cards(sim)
    assert "【张三" in card["text"] and "\n4. " in card["text"] and "\n6. " in card["text"]
    await sim.rep("/info @李四")  # 李四 is now the current customer
    reply = await sim.rep("/send 5")
    assert "张三" in reply
    await sim.advance(timedelta(minutes=1))
    [sent] = sim.sent("reply", "c1")
    assert "置换补贴" in sent["text"]
    assert sim.sent("reply", "c2") == []
    [logged] = await sim.rows(Event, Event.kind == "script_sent")
    assert logged.data["script_id"] == "cars-reactivate-subsidy"


async def test_customers_long_silent_when_first_swept_get_no_card(sim: Harness) -> None:
    """A database from before lifecycles: everyone starts "new"; the first sweep puts each in
    their state, and only a fresh dormancy is worth a card."""
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    await sim.customer_says("c1", "你好")
    await sim.customer_says("c2", "你好")
    async with sim.bot.db.transaction() as session:
        for customer in await sim.rows(Customer):
            stored = await session.get(Customer, customer.id)
            assert stored is not None and stored.last_inbound_at is not None
            back = timedelta(days=20 if customer.display_name == "张三" else 6)
            stored.added_at -= back
            stored.last_inbound_at -= back
            stored.lifecycle = "new"
    await advance_to(sim, datetime(2026, 3, 27, 10, 0, tzinfo=BERLIN))
    assert await state(sim, "c1") == "dormant" and await state(sim, "c2") == "growing"
    assert cards(sim) == []
    await advance_to(sim, datetime(2026, 3, 28, 10, 0, tzinfo=BERLIN))
    [card] = cards(sim)
    assert "【李四" in card["text"]


async def test_no_card_for_opted_out_or_deleted_customers(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"), ("c2", "李四"), ("c3", "王五"))
    await sim.customer_says("c1", "以后不要再给我发消息了")
    await sim.delete("c2")  # found out when the next follow-up cannot be delivered
    await sim.customer_says("c3", "别老催我了")
    await advance_to(sim, datetime(2026, 4, 6, 10, 0, tzinfo=BERLIN))
    assert cards(sim) == []
    assert await state(sim, "c1") == "dormant" and await state(sim, "c3") == "dormant"
    assert await state(sim, "c2") == "lost"


# -- what people read -------------------------------------------------------------------------------


async def test_info_shows_the_state_and_the_stage_history(sim: Harness) -> None:
    await sim.customer_in_chat()
    await advance_to(sim, datetime(2026, 3, 30, 15, 30, tzinfo=BERLIN))
    await sim.rep("/stage @张三 意向")
    card = await sim.rep("/info @张三")
    assert "生命周期：成长" in card
    lines = card.splitlines()
    start = lines.index("阶段记录：")
    assert lines[start + 1 : start + 4] == [
        "- 3月27日 09:00 陌生（加好友）",
        "- 3月27日 09:01 陌生 → 潜在（首次回复）",
        "- 3月30日 15:30 潜在 → 意向（手动调整）",
    ]
    assert "T0" not in card and "T1" not in card and "intent" not in card
    await advance_to(sim, datetime(2026, 4, 6, 10, 0, tzinfo=BERLIN))
    assert "生命周期：休眠" in await sim.rep("/info @张三")


async def test_digest_counts_states_and_names_the_newly_dormant(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    await sim.customer_says("c1", "你好")
    await sim.customer_says("c2", "你好")
    await advance_to(sim, datetime(2026, 4, 2, 10, 0, tzinfo=BERLIN))
    await sim.customer_says("c2", "还在考虑")
    await advance_to(sim, datetime(2026, 4, 3, 21, 0, tzinfo=BERLIN))
    digest = sim.sent("digest", "supervisor:王经理")[-1]["text"]
    assert "新转休眠：1（张三）" in digest
    assert "客户生命周期：新客0、成长1、成熟0、休眠1、流失0" in digest
    assert "#" not in digest.split("新转休眠：")[1].splitlines()[0]  # names, not ids


async def test_a_past_days_digest_counts_states_as_that_day_ended(sim: Harness) -> None:
    """`salesbot digest --date` of a past day: 张三 was dormant when 3 April ended, though he has
    written since; today's digest counts him as he is now."""
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    await sim.customer_says("c1", "你好")
    await sim.customer_says("c2", "你好")
    await advance_to(sim, datetime(2026, 4, 2, 10, 0, tzinfo=BERLIN))
    await sim.customer_says("c2", "还在考虑")
    await advance_to(sim, datetime(2026, 4, 6, 11, 0, tzinfo=BERLIN))
    await sim.customer_says("c1", "我回来了")
    assert await state(sim) == "growing"
    await sim.with_customers(("c3", "王五"))  # added after 3 April: not counted for it
    [then] = await sim.bot.digests.render(["demo"], date(2026, 4, 3), "x")
    assert "客户生命周期：新客0、成长1、成熟0、休眠1、流失0" in then
    [now] = await sim.bot.digests.render(["demo"], date(2026, 4, 6), "x")
    assert "客户生命周期：新客1、成长2、成熟0、休眠0、流失0" in now


async def test_a_business_pipeline_gets_its_verticals_reactivation_scripts(db_url: str) -> None:
    """The education example: 咨询 is stranger and potential (silent 7 days: dormant), 报名 is the
    order (30 days); each card offers the education playbook's scripts for that step first."""
    config = load_config(ROOT / "examples" / "education" / "config.toml")
    start = datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)
    async with Harness(config, start, database_url=db_url) as sim:
        await sim.with_customers(("c1", "王妈妈"), ("c2", "李爸爸"))
        await sim.customer_says("c1", "孩子三年级，数学跟不上")
        await sim.customer_says("c2", "报名了")
        await sim.rep("/order @李爸爸")
        await advance_to(sim, datetime(2026, 11, 30, 10, 0, tzinfo=SHANGHAI))
        [consult] = cards(sim)
        assert "· 咨询】已经 7 天没有消息了" in consult["text"]
        assert "学习资料" in consult["text"] and "公开课邀请" in consult["text"]
        [turned] = await sim.rows(Event, Event.kind == "reactivate")
        assert [s.split("-")[0] for s in turned.data["scripts"]][:2] == ["education", "education"]
        await advance_to(sim, datetime(2026, 12, 23, 10, 0, tzinfo=SHANGHAI))
        enrolled = cards(sim)[-1]["text"]
        assert "【李爸爸" in enrolled and "已经 30 天没有消息了" in enrolled and "新学期关怀" in enrolled


async def test_a_customer_who_never_wrote_is_not_said_to_have_written(sim: Harness) -> None:
    """The silence of a new friend who never answered the welcome began with the friend request:
    the card says so, rather than "no message since" a day they sent nothing."""
    await sim.new_customer()  # added on Friday 27 March, never writes
    await advance_to(sim, datetime(2026, 4, 3, 10, 0, tzinfo=BERLIN))
    [card] = cards(sim)
    customer_id = (await sim.customer("c1")).id
    assert card["text"].startswith(
        f"【张三 #{customer_id} · 陌生】3月27日加的好友，7 天了还没有回复过，转为「休眠」客户。"
    )
    assert "没有消息" not in card["text"] and "最后一次" not in card["text"]


async def test_the_card_says_when_the_rep_already_reached_out_during_the_silence(sim: Harness) -> None:
    """The rep wrote yesterday and got no answer: the card says so, so a second message the next
    morning is a choice, not a reflex (a reason to come back, not spam)."""
    await sim.customer_in_chat()  # wrote on Friday 27 March
    await advance_to(sim, datetime(2026, 4, 2, 15, 0, tzinfo=BERLIN))
    await sim.rep_types("张三，周末新到了几台现车，要不要来看看？", in_chat="c1")
    await advance_to(sim, datetime(2026, 4, 3, 10, 0, tzinfo=BERLIN))
    [card] = cards(sim)
    assert card["text"].splitlines()[1] == "4月2日你已经联系过TA，还没有回音，不必急着再发。"
    # a card without outreach since the silence began has no such line
    await sim.customer_in_chat("c2", "李四")
    await sim.advance(timedelta(days=7))
    assert "联系过" not in cards(sim)[-1]["text"]


async def test_the_card_says_when_an_automated_message_reaches_the_customer_that_day(
    config: Config, db_url: str
) -> None:
    """By default the 30th day after the order brings both the T+30 aftercare (10:00) and the
    dormancy (sweep at 10:00): the card says the customer is being written to that very morning,
    so the rep does not follow the bot's care message with a "好久没联系了"."""
    async with Harness(config, AUTUMN, database_url=db_url) as sim:
        await sim.customer_in_chat()
        await sim.rep("/order @张三 SUV")
        await advance_to(sim, datetime(2026, 10, 31, 10, 1, tzinfo=BERLIN))
        [card] = cards(sim)
        assert card["text"].splitlines()[1] == "今天会自动给TA发售后关怀，不必急着再发。"
        assert any(m["at"].startswith("2026-10-31") for m in sim.sent("aftercare", "c1"))
