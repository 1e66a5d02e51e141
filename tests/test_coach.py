"""The coaching card (issue 18): after a first reply and each stage change the rep's console gets
the next best step with numbered playbook scripts; /send N sends them to the card's customer; the
console stays readable (one card per customer per gap, none while the rep is busy with them)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_config, parse_config
from storage.models import Event, ScheduledMessage
from tests.conftest import MONDAY_10AM, ROOT, default_config_data, make_config
from tests.harness import Harness

GAP = timedelta(minutes=30)  # config.toml's [coach] min_gap_minutes


def cards(sim: Harness) -> list[str]:
    return [m["text"] for m in sim.sent("coach", "console")]


async def test_a_first_reply_gets_the_next_best_step(sim: Harness) -> None:
    await sim.new_customer("c1", "张三")
    assert cards(sim) == []  # the welcome alone: nothing to coach yet
    await sim.customer_says("c1", "你好，想了解一下")
    [card] = cards(sim)
    lines = card.splitlines()
    assert lines[0] == "【张三 #1 · 潜在】第一次回复了你"
    assert lines[1].startswith("下一步（挖掘需求 → 强化需求）：")
    assert "/send 编号" in lines[2]
    # the demo account sells cars: its own discovery questions come first, then one to deepen
    assert lines[3].startswith("1. 张三，想先了解下您平时用车")
    assert lines[4].startswith("2. ") and lines[5].startswith("3. ") and len(lines) == 6
    for internal in ("discovery", "deepen", "potential", "cars-"):
        assert internal not in card
    [event] = await sim.rows(Event, Event.kind == "coach")
    assert event.data["scripts"][:2] == ["cars-discovery-usage", "cars-discovery-budget"]
    assert event.data["first"] == 1
    # the card's numbers work like a suggestion's
    await sim.rep("/send 2")
    await sim.advance(timedelta(minutes=1))
    [reply] = sim.sent("reply", "c1")
    assert reply["text"].startswith("方便说下您的预算")
    [row] = await sim.rows(ScheduledMessage, ScheduledMessage.kind == "reply")
    assert row.sequence == "playbook:discovery" and row.context["script_id"] == "cars-discovery-budget"
    # a second message is no first reply
    await sim.advance(GAP * 2)
    await sim.customer_says("c1", "预算二十万左右")
    assert len(cards(sim)) == 1


async def test_a_stage_change_gets_a_card_for_the_new_stage(sim: Harness) -> None:
    await sim.customer_in_chat("c1", "张三")
    await sim.advance(GAP + timedelta(minutes=1))
    await sim.rep("/stage 意向 @张三")
    await sim.advance(timedelta(seconds=1))
    _, card = cards(sim)
    lines = card.splitlines()
    assert lines[0] == "【张三 #1 · 意向】阶段：潜在 → 意向"
    assert lines[1].startswith("下一步（方案 → 促成）：")
    assert [line[:3] for line in lines[3:]] == ["4. ", "5. ", "6. "]  # after the first card's 1-3
    # /order moves the customer on: the card says what to do after the sale
    await sim.advance(GAP + timedelta(minutes=1))
    await sim.rep("/order SUV @张三")
    await sim.advance(timedelta(seconds=1))
    after_sale = cards(sim)[-1].splitlines()
    assert after_sale[0] == "【张三 #1 · 下单】阶段：意向 → 下单"
    assert after_sale[1].startswith("下一步（交付价值）：")
    assert after_sale[3].startswith("7. 张三，恭喜您订车")


async def test_at_most_one_card_per_customer_per_gap(sim: Harness) -> None:
    await sim.customer_in_chat("c1", "张三")
    assert len(cards(sim)) == 1
    await sim.advance(timedelta(minutes=10))
    await sim.rep("/stage 意向 @张三")
    await sim.advance(timedelta(seconds=1))
    assert len(cards(sim)) == 1  # the first card is 10 minutes old
    # a gap after that /stage (the rep's last command about TA), the next change is coached
    await sim.advance(GAP + timedelta(minutes=1))
    await sim.rep("/order @张三")
    await sim.advance(timedelta(seconds=1))
    assert len(cards(sim)) == 2 and "意向 → 下单" in cards(sim)[-1]


async def test_no_card_for_a_customer_the_rep_is_busy_with(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    await sim.customer_says("c1", "你好")
    await sim.customer_says("c2", "你好")
    assert len(cards(sim)) == 2
    await sim.advance(GAP + timedelta(minutes=5))
    await sim.rep_types("张三您好，预算大概多少？", in_chat="c1")  # typed by hand in TA's chat
    await sim.rep("/info @李四")  # looking at TA's card
    await sim.advance(timedelta(minutes=5))
    await sim.rep("/stage 意向 @张三")
    await sim.rep("/stage 意向 @李四")
    await sim.advance(timedelta(seconds=1))
    assert len(cards(sim)) == 2


async def test_send_on_a_card_goes_to_its_customer_whoever_is_current(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    await sim.customer_says("c1", "你好")
    await sim.customer_says("c2", "在吗")
    zhang, li = cards(sim)
    assert "3. " in zhang and "4. " in li
    await sim.rep("/info @李四")  # 李四 becomes "this customer"
    answer = await sim.rep("/send 2")
    assert answer.startswith("【张三 #1")
    await sim.advance(timedelta(minutes=1))
    [reply] = sim.sent("reply", "c1")
    assert reply["text"].splitlines()[0] in zhang
    assert sim.sent("reply", "c2") == []


async def test_no_card_when_the_first_reply_already_gets_a_suggestion(sim: Harness) -> None:
    await sim.new_customer("c1", "张三")
    await sim.customer_says("c1", "太贵了")
    assert sim.sent("suggestion", "console") and cards(sim) == []


async def test_coaching_can_be_turned_off(db_url: str) -> None:
    config = make_config({"coach": {"enabled": False}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.customer_in_chat("c1", "张三")
        await sim.rep("/stage 意向 @张三")
        await sim.advance(timedelta(minutes=1))
        assert cards(sim) == []


async def test_a_vertical_without_its_own_script_uses_the_general_ones(db_url: str) -> None:
    data = default_config_data()
    data["accounts"][0]["vertical"] = "general"
    config = parse_config(data, "test-config", ROOT)
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.customer_in_chat("c1", "张三")
        [event] = await sim.rows(Event, Event.kind == "coach")
        assert all(script.startswith("general-") for script in event.data["scripts"])


def test_simulate_prints_the_card_as_kind_coach(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "coach.toml"
    scenario.write_text(
        "start = 2026-11-23T10:00:00+08:00\n"
        'customers = [{ id = "c1", name = "张三" }]\n'
        '[[steps]]\nfriend_request = "c1"\n'
        '[[steps]]\nadvance = "1m"\n'
        '[[steps]]\ncustomer = "c1"\nsays = "你好，想了解一下"\n',
        encoding="utf-8",
    )
    code = main(["simulate", str(scenario), "--config", str(ROOT / "config.toml")])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    [coach] = [line for line in lines if line["kind"] == "coach"]
    assert coach["to"] == "console" and coach["text"].startswith("【张三 #1 · 潜在】")


async def test_a_business_pipeline_is_coached_by_its_process_steps(db_url: str) -> None:
    """The education example: 咨询 is stranger and potential, 试听 is intent; its vertical's
    scripts come before the general ones."""
    config = load_config(ROOT / "examples" / "education" / "config.toml")
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.customer_in_chat("c1", "王妈妈")
        [card] = cards(sim)
        assert card.startswith("【王妈妈 #1 · 咨询】第一次回复了你\n下一步（挖掘需求 → 强化需求）")
        [event] = await sim.rows(Event, Event.kind == "coach")
        assert [s.split("-")[0] for s in event.data["scripts"]] == ["education"] * 3
        await sim.advance(GAP + timedelta(minutes=1))
        await sim.rep("/stage 试听 @王妈妈")
        await sim.advance(timedelta(seconds=1))
        assert "咨询 → 试听\n下一步（方案 → 促成）" in cards(sim)[-1]


# what only fits once time has passed since the order, or after the customer replied
LATER_WORDS = ("开了几天", "上了几节课", "东西收到了吗", "用了几天", "用得满意", "车开得满意", "谢谢回复")


@pytest.mark.parametrize("example", ["config.toml", "examples/education/config.toml"])
async def test_a_card_right_after_an_order_offers_what_fits_that_moment(db_url: str, example: str) -> None:
    """/order with no recent chat: the card thanks the customer and says what happens next; how
    the first week went is for later (the T+1/T+3 aftercare asks it too), and nothing thanks
    them for a reply they never sent."""
    config = load_config(ROOT / example)
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.new_customer("c2", "李四")
        await sim.advance(timedelta(hours=2))
        await sim.rep("/order @李四 途观L")
        await sim.advance(timedelta(seconds=1))
        [card] = cards(sim)
        assert "→ 下单\n" in card or "→ 报名\n" in card
        for words in LATER_WORDS:
            assert words not in card
        assert "谢谢您的信任" in card
        await sim.advance(GAP + timedelta(minutes=1))
        await sim.rep("/order @李四 途观L")  # a repeat order: the same moment
        await sim.advance(timedelta(seconds=1))
        repeat = cards(sim)[-1]
        assert repeat != card
        for words in LATER_WORDS:
            assert words not in repeat


async def test_a_card_after_moving_a_customer_back_does_not_thank_them_for_replying(sim: Harness) -> None:
    await sim.customer_in_chat("c1", "张三")
    await sim.advance(GAP + timedelta(minutes=1))
    await sim.rep("/stage @张三 陌生")
    await sim.advance(timedelta(seconds=1))
    back = cards(sim)[-1]
    assert "潜在 → 陌生" in back and "谢谢回复" not in back
