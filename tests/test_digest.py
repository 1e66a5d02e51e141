"""The supervisors' daily digest and rep alerts, on a virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.cli import main
from bot.config import Config
from bot.domain.limits import split_message
from storage.models import ScheduledMessage
from tests.conftest import SHANGHAI, make_config, write_config
from tests.harness import Harness

MORNING = datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)


@pytest.fixture
async def sim(config: Config, db_url: str) -> AsyncIterator[Harness]:
    """A Monday starting at 09:00."""
    async with Harness(config, MORNING, database_url=db_url) as simulation:
        yield simulation


def digests(sim: Harness, to: str = "supervisor:王经理") -> list[dict[str, str]]:
    return sim.sent("digest", to)


def line(text: str, label: str) -> str:
    return next(row for row in text.splitlines() if row.startswith(label))


async def scripted_day(sim: Harness) -> None:
    """3 new friends, 2 replies, 2 objections, moves, 1 order, 1 tag, one churn discovered by a send."""
    await sim.friend_request("c1", "张三", "小红书看到的")
    await sim.friend_request("c2", "李四")
    await sim.friend_request("c3", "王五")
    await sim.advance(timedelta(hours=1))
    await sim.customer_says("c1", "太贵了")
    await sim.rep_types("/tag @张三 预算:20-30万")
    await sim.rep_types("/stage @张三 intent")
    await sim.customer_says("c2", "我得跟老婆商量一下")
    await sim.rep_types("/order @张三 SUV")
    await sim.delete("c3")
    await sim.rep_types("/countdown @王五 今天 18:00")  # its first step fails: 王五 deleted the rep
    await sim.rep_types("您好，SUV的资料发您了", in_chat="c1")


async def test_digest_numbers_for_a_scripted_day_match_the_events(sim: Harness) -> None:
    await scripted_day(sim)
    await sim.advance(timedelta(hours=12))  # past 20:00
    [digest] = digests(sim)
    text = digest["text"]
    assert datetime.fromisoformat(digest["at"]) == datetime(2026, 11, 23, 20, 0, tzinfo=SHANGHAI)
    assert "王经理的团队日报 · 11月23日 周一（11月22日 20:00 至 11月23日 20:00）" in text
    assert line(text, "新好友") == "新好友：3（+3）"
    assert line(text, "欢迎语") == "欢迎语：3"
    assert line(text, "回复的客户") == "回复的客户：2（+2）"
    assert line(text, "顾虑") == "顾虑：2（+2）（价格1、决策人1）"
    assert line(text, "阶段变动") == "阶段变动：陌生0 → 潜在2 → 意向1 → 下单1 → 复购0 → KOC0"
    assert line(text, "成交") == "成交：1（+1）"
    assert line(text, "删除好友") == "删除好友：1（+1）"
    assert line(text, "定时消息") == "定时消息：已发0，失败1，过期0，明日计划1"
    assert line(text, "待回复") == "待回复：1（李四#2）"  # 张三 got a message from the rep; 李四 is waiting
    assert line(text, "热门标签") == "热门标签：消费:20-30万×1"


async def test_change_against_the_previous_day(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(days=1))
    for handle, name in (("c2", "李四"), ("c3", "王五"), ("c4", "赵六")):
        await sim.friend_request(handle, name)
    await sim.advance(timedelta(hours=12))
    first, second = digests(sim)
    assert line(first["text"], "新好友") == "新好友：1（+1）"
    assert line(second["text"], "新好友") == "新好友：3（+2）"


async def test_at_risk_customers(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    await sim.customer_says("c1", "想看看SUV")
    await sim.rep_types("好的，资料发您", in_chat="c1")
    await sim.rep_types("/stage @张三 intent")
    await sim.advance(timedelta(days=4, hours=12))
    last = digests(sim)[-1]["text"]
    assert line(last, "沉默的意向客户") == "沉默的意向客户：1（张三#1）"
    assert line(digests(sim)[0]["text"], "沉默的意向客户") == "沉默的意向客户：0"


async def test_missed_digest_is_sent_at_startup_within_grace_and_never_twice(
    config: Config, db_url: str
) -> None:
    async with Harness(config, MORNING, database_url=db_url) as first:
        await first.friend_request("c1", "张三")
        await first.advance(timedelta(hours=1))
    # down over 20:00, back at 21:30: within the 3-hour grace period
    async with Harness(
        config, datetime(2026, 11, 23, 21, 30, tzinfo=SHANGHAI), database_url=db_url
    ) as second:
        await second.advance(timedelta(minutes=1))
    [late] = digests(second)
    assert datetime.fromisoformat(late["at"]) == datetime(2026, 11, 23, 21, 30, tzinfo=SHANGHAI)
    async with Harness(config, datetime(2026, 11, 23, 22, 0, tzinfo=SHANGHAI), database_url=db_url) as third:
        await third.advance(timedelta(minutes=30))
    assert digests(third) == [], "already sent today"


async def test_digest_missed_beyond_grace_is_dropped(config: Config, db_url: str) -> None:
    async with Harness(config, MORNING, database_url=db_url) as first:
        await first.friend_request("c1", "张三")
    async with Harness(config, datetime(2026, 11, 24, 0, 30, tzinfo=SHANGHAI), database_url=db_url) as second:
        await second.advance(timedelta(minutes=1))
        async with second.bot.db.transaction() as session:
            [row] = (
                await session.exec(
                    select(ScheduledMessage).where(
                        ScheduledMessage.kind == "digest", ScheduledMessage.step == "2026-11-23"
                    )
                )
            ).all()
    assert digests(second) == []
    assert row.status == "expired"


async def test_long_digests_are_split_at_line_boundaries(db_url: str) -> None:
    base = make_config()
    first = base.accounts[0].model_dump(mode="json")
    second = {**first, "id": "demo2", "profile": {**first["profile"], "nickname": "小王"}}
    supervisor = {**base.supervisors[0].model_dump(mode="json"), "accounts": ["demo", "demo2"]}
    config = make_config(
        {"accounts": [first, second], "supervisors": [supervisor], "digest": {"max_chars": 200}}
    )
    async with Harness(config, MORNING, database_url=db_url) as sim:
        await sim.friend_request("c1", "张三")
        await sim.advance(timedelta(hours=12))
    parts = digests(sim)
    assert len(parts) > 2
    assert all(len(p["text"]) <= 200 for p in parts)
    whole = "\n".join(p["text"] for p in parts)
    assert "【团队合计】" in whole and "【小林】" in whole and "【小王】" in whole
    assert whole.count("新好友：") == 3, "team, and each rep"


def test_split_message() -> None:
    text = "\n".join(f"第{i}行内容" for i in range(30))
    parts = split_message(text, 40)
    assert all(len(p) <= 40 for p in parts)
    assert "\n".join(parts) == text, "nothing lost, every break at a line boundary"
    assert split_message("短", 40) == ["短"]
    assert split_message("x" * 90, 40) == ["x" * 40, "x" * 40, "x" * 10], "only an over-long line is cut"


async def test_rep_digest_on_demand(sim: Harness) -> None:
    await scripted_day(sim)
    await sim.rep_types("/digest")
    [mine] = digests(sim, "console")
    assert "小林的日报 · 11月23日 周一（截至 10:00）" in mine["text"]
    assert line(mine["text"], "新好友") == "新好友：3（+3）"
    await sim.rep_types("/日报 昨天")
    assert "11月22日 周日" in digests(sim, "console")[-1]["text"]
    await sim.rep_types("/digest 明年")
    reply = sim.last_reply()
    assert "看不懂日期「明年」" in reply


async def test_supervisor_gets_the_team_digest_and_only_that(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    sim.handles["demo-supervisor"] = "supervisor"
    sim.puppet.customer_says("demo-supervisor", "/digest")
    await sim.bot.settle()
    await sim.advance(timedelta(seconds=1))
    [team] = digests(sim)
    assert "王经理的团队日报" in team["text"]
    sim.puppet.customer_says("demo-supervisor", "/stage @张三 koc")
    await sim.advance(timedelta(seconds=1))
    refusal = sim.sent("command_reply")[-1]
    assert refusal["to"] == "supervisor:王经理" and "主管可以使用的命令：/digest" in refusal["text"]
    from storage.models import Customer

    async with sim.bot.db.transaction() as session:
        [customer] = (await session.exec(select(Customer))).all()
    assert customer.stage == "stranger", "a supervisor cannot change customers"


async def test_a_customer_cannot_ask_for_a_digest(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    await sim.customer_says("c1", "/digest")
    assert digests(sim, "console") == [] and digests(sim, "c1") == []


async def test_day_boundary_is_local_midnight(db_url: str) -> None:
    """00:30 in Shanghai is 16:30 UTC the day before: it counts for the new local day."""
    config = make_config()
    async with Harness(config, datetime(2026, 11, 23, 23, 50, tzinfo=SHANGHAI), database_url=db_url) as sim:
        await sim.friend_request("c1", "张三")
        await sim.advance(timedelta(minutes=40))  # 00:30 on the 24th
        await sim.friend_request("c2", "李四")
        await sim.advance(timedelta(hours=20))
        the_23rd = await sim.bot.digests.render(["demo"], date(2026, 11, 23), "x")
    [digest] = digests(sim)  # the 23rd's digest time (20:00) was before the start
    # the supervisor's digest covers the time since the previous one (20:00 on the 23rd): both
    assert "11月24日" in digest["text"] and line(digest["text"], "新好友").startswith("新好友：2（")
    assert line(the_23rd[0], "新好友").startswith("新好友：1（"), "a calendar day ends at local midnight"


def test_digest_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert main(["digest", "--config", str(config), "--date", "2026-11-23"]) == 0
    out = capsys.readouterr().out
    assert "王经理的团队日报 · 11月23日 周一" in out and "新好友：0（持平）" in out
    assert main(["digest", "--config", str(config), "--supervisor", "nobody"]) == 1
    assert "no supervisor named 'nobody'" in capsys.readouterr().err
    assert main(["digest", "--config", str(config), "--date", "23/11"]) == 1


def test_supervisor_config_is_checked() -> None:
    from bot.errors import ConfigError

    bad: dict[str, Any] = {"name": "x", "account": "demo", "contact": "c", "accounts": ["ghost"]}
    with pytest.raises(ConfigError, match=r"supervisors\.0: unknown account"):
        make_config({"supervisors": [bad]})


async def test_churn_alert_carries_the_card_summary(sim: Harness) -> None:
    await sim.friend_request("c1", "张三", "小红书")
    await sim.advance(timedelta(minutes=1))
    await sim.rep_types("/stage @张三 intent")
    await sim.delete("c1")
    await sim.rep_types("/countdown @张三 明天 18:00")
    await sim.advance(timedelta(hours=12))
    [alert] = sim.sent("alert")
    assert "已不是好友" in alert["text"] and "阶段：意向" in alert["text"] and "来源：小红书" in alert["text"]


async def test_owed_reply_nudge_in_working_hours_unless_the_rep_answered(db_url: str) -> None:
    config = make_config({"digest": {"owed_nudge": True, "owed_reply_minutes": 30}})
    evening = datetime(2026, 11, 23, 20, 50, tzinfo=SHANGHAI)  # working hours end at 21:00
    async with Harness(config, evening, database_url=db_url) as sim:
        for handle, name in (("c1", "张三"), ("c2", "李四")):
            await sim.friend_request(handle, name)
        await sim.advance(timedelta(minutes=1))
        await sim.customer_says("c1", "在吗？想问下价格")
        await sim.customer_says("c2", "你好")
        await sim.rep_types("在的，您好", in_chat="c2")
        await sim.advance(timedelta(hours=13))
    nudges = sim.sent("alert")
    assert [m["to"] for m in nudges] == ["console"]
    assert "【张三 #1】的消息已等了" in nudges[0]["text"]
    assert datetime.fromisoformat(nudges[0]["at"]) == datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI), (
        "21:21 is after hours: the nudge waits for the rep's morning"
    )


async def test_no_owed_nudge_by_default(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    await sim.customer_says("c1", "在吗")
    await sim.advance(timedelta(hours=3))
    assert sim.sent("alert") == []


async def test_only_a_human_answer_clears_an_owed_reply(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    await sim.customer_says("c1", "这款还有现货吗")
    await sim.rep_types("/countdown @张三 今天 19:00 限时价")  # steps reach 张三 from 16:00
    await sim.advance(timedelta(hours=11, minutes=30))
    assert sim.sent("countdown", "c1"), "automated messages went to 张三"
    [digest] = digests(sim)
    assert line(digest["text"], "待回复") == "待回复：1（张三#1）", "automated messages answer nobody"


async def test_a_customer_who_opted_out_is_owed_no_reply(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    await sim.customer_says("c1", "以后不要再给我发消息了")
    await sim.advance(timedelta(hours=12))
    [digest] = digests(sim)
    assert line(digest["text"], "待回复") == "待回复：0"


async def test_an_old_owed_reply_drops_off_and_is_counted_once(db_url: str) -> None:
    config = make_config({"digest": {"owed_reply_max_days": 2, "quiet": "line"}})
    async with Harness(config, MORNING, database_url=db_url) as sim:
        await sim.friend_request("c1", "张三")
        await sim.advance(timedelta(minutes=1))
        await sim.customer_says("c1", "这款还有现货吗")  # Monday 09:01, never answered
        await sim.advance(timedelta(days=3, hours=12))
        texts = [d["text"] for d in digests(sim)]
    owed = [line(t, "待回复") for t in texts[:3]]
    assert owed == ["待回复：1（张三#1）", "待回复：1（张三#1）", "待回复：0"]
    dropped = [[row for row in t.splitlines() if row.startswith("超过 2 天没回复")] for t in texts]
    assert dropped == [[], [], ["超过 2 天没回复、不再列出：1"], []], "counted once, the day it drops"
    assert "这段时间没有新动静" in texts[3], "then nothing is left to report: one short line"


async def test_silence_after_an_order_has_its_own_line(db_url: str) -> None:
    config = make_config({"digest": {"after_sale_silent_days": 5}})
    async with Harness(config, MORNING, database_url=db_url) as sim:
        for handle, name in (("c1", "张三"), ("c2", "李四")):
            await sim.friend_request(handle, name)
        await sim.advance(timedelta(minutes=1))
        for handle, name in (("c1", "张三"), ("c2", "李四")):
            await sim.customer_says(handle, "想看看SUV")
            await sim.rep_types("好的，资料发您", in_chat=handle)
            await sim.rep_types(f"/stage @{name} intent")
        await sim.rep_types("/order @张三 SUV")
        await sim.advance(timedelta(days=6, hours=12))
        last = digests(sim)[-1]["text"]
    assert line(last, "沉默的意向客户") == "沉默的意向客户：1（李四#2）", "an ordered customer is not at risk"
    assert line(last, "成交后久未联系") == "成交后久未联系：1（张三#1）"


async def test_the_next_digest_covers_the_evening_after_the_last_one(sim: Harness) -> None:
    await sim.advance(timedelta(hours=11))  # Monday 20:00: the first digest
    await sim.advance(timedelta(minutes=30))
    await sim.friend_request("c1", "张三")  # 20:30, after that digest
    await sim.advance(timedelta(minutes=1))
    await sim.customer_says("c1", "想看看SUV")
    await sim.rep_types("/order @张三 SUV")
    await sim.advance(timedelta(days=1))
    first, second = digests(sim)
    assert "这段时间没有新动静" in first["text"], "a quiet span is one short line"
    assert line(second["text"], "成交") == "成交：1（+1）", "the 20:30 order is in Tuesday's digest"
    assert line(second["text"], "新好友") == "新好友：1（+1）"


async def test_quiet_digests_can_be_skipped_or_cover_the_previous_day(db_url: str) -> None:
    config = make_config({"digest": {"quiet": "skip", "covers": "previous_day"}})
    async with Harness(config, MORNING, database_url=db_url) as sim:
        await sim.advance(timedelta(hours=12))  # Monday: Sunday was quiet, nothing is sent
        await sim.friend_request("c1", "张三")
        await sim.advance(timedelta(days=1))  # Tuesday 21:00: Monday's digest
        [digest] = digests(sim)
    assert "11月23日 周一（11月23日 00:00 至 11月24日 00:00）" in digest["text"]
    assert line(digest["text"], "新好友") == "新好友：1（+1）"


SIGNAL_LINES = ("热线索", "自动兑现承诺", "不想再收消息", "不想被催", "转介绍", "KOC候选")


async def test_what_customers_signalled_is_in_the_digest(sim: Harness) -> None:
    await sim.with_customers(
        ("c1", "张三"), ("c2", "李四"), ("c3", "王五"), ("c4", "赵六"), ("c5", "钱七"), ("c6", "孙八")
    )
    await sim.customer_says("c1", "什么时候能提车？")
    await sim.advance(timedelta(minutes=8))
    await sim.rep_types("这周六就可以，我帮您约时间", in_chat="c1")
    await sim.customer_says("c2", "怎么付定金？")  # the rep never answers
    await sim.customer_says("c3", "礼物")  # the welcome's promise, kept
    await sim.customer_says("c4", "以后不要再给我发消息了")
    await sim.customer_says("c5", "别老催我了")
    await sim.customer_says("c6", "我同事也想了解，我把她推给你")
    await sim.advance(timedelta(hours=12))
    [digest] = digests(sim)
    text = digest["text"]
    assert line(text, "热线索") == "热线索：2，已回复1（张三#1 8分钟后回复、李四#2 还没回复）"
    assert line(text, "自动兑现承诺") == "自动兑现承诺：1（“礼物”1次）"
    assert line(text, "不想再收消息") == "不想再收消息：1（赵六#4）"
    assert line(text, "不想被催") == "不想被催：1（钱七#5）"
    assert line(text, "转介绍") == "转介绍：1（孙八#6）"
    assert line(text, "KOC候选") == "KOC候选：1（孙八#6）"
    # the next day nothing was signalled: only the candidate (a standing state) is listed
    await sim.advance(timedelta(days=1))
    later = digests(sim)[-1]["text"]
    assert [label for label in SIGNAL_LINES if any(r.startswith(label) for r in later.splitlines())] == [
        "KOC候选"
    ]


async def test_a_day_without_signals_has_no_such_lines(sim: Harness) -> None:
    await scripted_day(sim)
    await sim.advance(timedelta(hours=12))
    [digest] = digests(sim)
    assert not [r for r in digest["text"].splitlines() if r.startswith(SIGNAL_LINES)]


async def test_koc_candidates_are_listed_per_rep(db_url: str) -> None:
    base = make_config()
    first = base.accounts[0].model_dump(mode="json")
    second = {**first, "id": "demo2", "profile": {**first["profile"], "nickname": "小王"}}
    supervisor = {**base.supervisors[0].model_dump(mode="json"), "accounts": ["demo", "demo2"]}
    config = make_config({"accounts": [first, second], "supervisors": [supervisor]})
    async with Harness(config, MORNING, database_url=db_url) as sim:
        await sim.friend_request("c1", "张三")
        await sim.advance(timedelta(minutes=1))
        await sim.customer_says("c1", "我同事也想了解，我把她推给你")
        await sim.advance(timedelta(hours=12))
    whole = "\n".join(p["text"] for p in digests(sim))
    team, first_rep, second_rep = whole.split("【")[1:4]
    assert team.startswith("团队合计") and "KOC候选：1（张三#1）" in team
    assert first_rep.startswith("小林") and "KOC候选：1（张三#1）" in first_rep
    assert second_rep.startswith("小王") and "KOC候选" not in second_rep


async def test_a_past_days_digest_says_its_koc_candidates_are_todays(sim: Harness) -> None:
    """KOC candidates are not kept per day: a past day's digest lists them as they are now, and
    says so."""
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    await sim.customer_says("c1", "我同事也想了解，我把她推给你")
    [today] = await sim.bot.digests.render(["demo"], date(2026, 11, 23), "x")
    assert line(today, "KOC候选") == "KOC候选：1（张三#1）"
    await sim.advance(timedelta(days=1))
    [yesterday] = await sim.bot.digests.render(["demo"], date(2026, 11, 23), "x")
    assert line(yesterday, "当前KOC候选") == "当前KOC候选：1（张三#1）"
