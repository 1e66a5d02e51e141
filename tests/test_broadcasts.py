"""Segment sends (/broadcast, /confirm): a preview with counts, exclusions and timing; one message
per included customer, idempotent per broadcast; /broadcast 取消 stops the rest; supervisors reach
their team's accounts; customers can never run it."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bot.domain.segments import parse_segment
from bot.domain.stages import Pipeline
from bot.domain.tags import TagVocabulary
from bot.transport.local_puppet import TRANSCRIPT_ENV
from storage.db import Database
from storage.models import Account, Customer, Event, ScheduledMessage
from tests.cli_process import Bot, kill_point, wait_for
from tests.conftest import MONDAY_10AM, make_config, portable_config_text, write_config
from tests.harness import Harness

NO_FOLLOWUPS: dict[str, Any] = {"followup": {"steps": []}}
USAGE = "/broadcast <筛选> <内容|模板:名字> 或 /broadcast 取消"


async def broadcast_rows(sim: Harness) -> list[ScheduledMessage]:
    return await sim.rows(ScheduledMessage, ScheduledMessage.kind == "broadcast")


async def intent_customers(sim: Harness, *people: tuple[str, str]) -> None:
    await sim.with_customers(*people)
    for _, name in people:
        assert "意向" in await sim.rep(f"/stage @{name} 意向")


def test_the_filter_is_the_leading_words_and_the_rest_is_the_message() -> None:
    config = make_config()
    pipeline, vocabulary = Pipeline(config.stages), TagVocabulary(config.tags.groups)
    segment, text = parse_segment("意向 预算:20-30万 沉默7天 休眠 您好：周末有活动", pipeline, vocabulary)
    assert segment.stages == ("intent",) and segment.lifecycles == ("dormant",)
    assert [(t.group, t.value) for t in segment.tags] == [("consumption", "20-30万")]
    assert segment.silent_days == 7 and text == "您好：周末有活动"
    segment, text = parse_segment("全部 在吗", pipeline, vocabulary)
    assert segment.everyone and text == "在吗"
    segment, text = parse_segment("周末到店有礼", pipeline, vocabulary)
    assert segment.empty and text == "周末到店有礼"


async def test_preview_counts_and_says_why_customers_are_left_out(db_url: str) -> None:
    async with Harness(make_config(NO_FOLLOWUPS), MONDAY_10AM, database_url=db_url) as sim:
        people = [("a", "甲"), ("b", "乙"), ("c", "丙"), ("d", "丁"), ("e", "戊")]
        await intent_customers(sim, *people[:4])
        await sim.with_customers(people[4])  # not at 意向: not matched
        for _, name in people:
            await sim.rep(f"/tag @{name} 预算:20-30万")
        await sim.rep("/pause @乙")
        await sim.customer_says("c", "以后不要再给我发消息了")
        async with sim.bot.db.transaction() as session:
            gone = await session.get(Customer, (await sim.customer("d")).id)
            assert gone is not None
            gone.deleted_at = MONDAY_10AM
        reply = await sim.rep("/群发 意向 预算:20-30万 {称呼}您好，周末到店试驾有礼")
        assert "群发预览：筛选「意向 预算:20-30万」共 4 位客户" in reply, reply
        assert "将发送：1 位" in reply
        assert "不发送：3 位（" in reply
        for why in ("自动消息已暂停 1", "已退订或不想被催 1", "已删除好友 1"):
            assert why in reply, reply
        assert "最后一条约 11月23日 10:" in reply and "/confirm" in reply
        for word in ("paused", "opted", "capped", "deleted", "broadcast_"):
            assert word not in reply
        assert await broadcast_rows(sim) == [], "a preview plans nothing"


async def test_confirm_plans_one_message_per_customer_once(db_url: str) -> None:
    async with Harness(make_config(NO_FOLLOWUPS), MONDAY_10AM, database_url=db_url) as sim:
        await intent_customers(sim, ("a", "甲"), ("b", "乙"), ("c", "丙"))
        await sim.with_customers(("z", "己"))  # 陌生: not in the segment
        await sim.rep("/broadcast 意向 {称呼}您好，周末到店试驾有礼")
        reply = await sim.rep("/确认")
        assert "已安排群发：3 位客户每人一条" in reply, reply
        rows = await broadcast_rows(sim)
        assert len(rows) == 3 and len({r.customer_id for r in rows}) == 3
        assert len({r.idempotency_key for r in rows}) == 3
        assert "没有待确认的群发" in await sim.rep("/confirm"), "a second /confirm plans nothing"
        assert len(await broadcast_rows(sim)) == 3
        await sim.advance(timedelta(minutes=10))
        for handle, name in (("a", "甲"), ("b", "乙"), ("c", "丙")):
            got = [t for t in sim.texts_to(sim.contact_id(handle)) if "试驾有礼" in t]
            assert got == [f"{name}您好，周末到店试驾有礼"], got
        assert not [t for t in sim.texts_to(sim.contact_id("z")) if "试驾有礼" in t]


async def test_confirm_without_a_preview_or_after_it_expired_says_so(db_url: str) -> None:
    async with Harness(make_config(NO_FOLLOWUPS), MONDAY_10AM, database_url=db_url) as sim:
        await intent_customers(sim, ("a", "甲"))
        assert "没有待确认的群发" in await sim.rep("/confirm")
        await sim.rep("/broadcast 意向 周末有活动")
        await sim.advance(timedelta(minutes=11))
        assert "群发预览已过期" in await sim.rep("/confirm")
        assert await broadcast_rows(sim) == []


async def test_cancel_stops_what_is_left(db_url: str) -> None:
    async with Harness(make_config(NO_FOLLOWUPS), MONDAY_10AM, database_url=db_url) as sim:
        people = [(f"c{n}", f"客户{n}") for n in range(5)]
        await intent_customers(sim, *people)
        await sim.rep("/broadcast 意向 周末到店有礼")
        await sim.rep("/confirm")
        await sim.advance(timedelta(seconds=50))  # paced: one or two went out
        sent = [r for r in await broadcast_rows(sim) if r.status == "sent"]
        assert 1 <= len(sent) < 5
        reply = await sim.rep("/broadcast 取消")
        assert f"已停止群发：还没发出的 {5 - len(sent)} 条消息已取消" in reply, reply
        await sim.advance(timedelta(hours=3))
        rows = await broadcast_rows(sim)
        assert len([r for r in rows if r.status == "sent"]) == len(sent)
        delivered = [
            t for handle, _ in people for t in sim.texts_to(sim.contact_id(handle)) if "到店有礼" in t
        ]
        assert len(delivered) == len(sent)
        assert "没有正在进行的群发" in await sim.rep("/broadcast 取消")
        await sim.rep("/broadcast 意向 还有一场")
        await sim.rep("/broadcast 取消")
        assert "没有待确认的群发" in await sim.rep("/confirm"), "取消 also drops a pending preview"


async def test_caps_and_opt_outs_apply_at_send_time_and_in_the_preview(db_url: str) -> None:
    """With room for one automated message a day, six customers do not all fit in the three days a
    broadcast message may wait: the preview says how many miss out. A customer who opts out after
    /confirm still gets nothing."""
    config = make_config({**NO_FOLLOWUPS, "reach": {"account_daily_cap": 1}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        people = [(f"c{n}", f"客户{n}") for n in range(6)]
        await intent_customers(sim, *people)
        reply = await sim.rep("/broadcast 意向 周末到店有礼")
        assert "将发送：4 位" in reply and "3天内排不上（每天发送上限、间隔发送） 2" in reply, reply
        await sim.rep("/confirm")
        assert len(await broadcast_rows(sim)) == 4
        await sim.customer_says("c3", "以后不要再给我发消息了")
        await sim.advance(timedelta(days=4))
        got = {
            handle: [t for t in sim.texts_to(sim.contact_id(handle)) if "到店有礼" in t]
            for handle, _ in people
        }
        assert got["c3"] == [] and got["c4"] == [] and got["c5"] == []
        assert all(len(got[f"c{n}"]) == 1 for n in range(3))


async def test_a_malformed_broadcast_gets_its_usage_line(db_url: str) -> None:
    async with Harness(make_config(NO_FOLLOWUPS), MONDAY_10AM, database_url=db_url) as sim:
        await intent_customers(sim, ("a", "甲"))
        for line in ("/broadcast", "/broadcast 意向", "/broadcast 周末有活动"):
            assert USAGE in await sim.rep(line), line
        assert "没有“土豪”这个阶段" in await sim.rep("/broadcast 阶段:土豪 你好")
        assert "没有待确认的群发" in await sim.rep("/confirm")


async def test_a_customer_can_never_broadcast(db_url: str) -> None:
    async with Harness(make_config(NO_FOLLOWUPS), MONDAY_10AM, database_url=db_url) as sim:
        await intent_customers(sim, ("a", "甲"), ("b", "乙"))
        await sim.customer_says("a", "/broadcast 全部 大家好")
        await sim.customer_says("a", "/confirm")
        await sim.advance(timedelta(hours=1))
        previews = await sim.rows(Event, col(Event.kind).startswith("broadcast"))
        assert previews == [] and await broadcast_rows(sim) == []
        assert not [t for t in sim.texts_to(sim.contact_id("b")) if "大家好" in t]


def team_config() -> tuple[dict[str, object], ...]:
    base = make_config()
    first = base.accounts[0].model_dump(mode="json")
    second = {**first, "id": "demo2", "profile": {**first["profile"], "nickname": "小王"}}
    supervisor = {**base.supervisors[0].model_dump(mode="json"), "accounts": ["demo", "demo2"]}
    return first, second, supervisor


async def test_a_supervisor_broadcasts_for_the_team_and_a_rep_for_their_own(db_url: str) -> None:
    first, second, supervisor = team_config()
    config = make_config({**NO_FOLLOWUPS, "accounts": [first, second], "supervisors": [supervisor]})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.with_customers(("a", "甲"))
        async with sim.bot.db.transaction() as session:  # a customer of the second rep
            session.add(
                Customer(
                    account_id="demo2",
                    wechat_id="wx_x",
                    display_name="辛",
                    stage="stranger",
                    added_at=MONDAY_10AM,
                )
            )
        assert "共 1 位客户" in await sim.rep("/broadcast 全部 你好")
        assert "只能给你自己" in await sim.rep("/broadcast 账号:demo2 全部 你好")
        sim.handles["demo-supervisor"] = "supervisor"
        sim.puppet.customer_says("demo-supervisor", "/群发 全部 周末有活动")
        await sim.advance(timedelta(seconds=1))
        preview = sim.sent("command_reply")[-1]
        assert preview["to"] == "supervisor:王经理" and "共 2 位客户（2 个账号）" in preview["text"], preview
        sim.puppet.customer_says("demo-supervisor", "/confirm")
        await sim.advance(timedelta(seconds=1))
        assert "已安排群发：2 位客户每人一条" in sim.sent("command_reply")[-1]["text"]
        rows = await broadcast_rows(sim)
        assert sorted(r.account_id for r in rows) == ["demo", "demo2"]


# -- a crash mid-broadcast --------------------------------------------------------------------------

CRASH_CUSTOMERS = 150
CRASH_KILLS = 3
CRASH_TEXT = "周末到店有礼"


def noon_somewhere() -> str:
    """A zone where it is about noon now: the real CLI runs on the wall clock, away from quiet hours."""
    hours = 12 - datetime.now(UTC).hour
    return "UTC" if hours == 0 else f"Etc/GMT{-hours:+d}"


async def simulated_customers(url: str, count: int) -> None:
    """``count`` customers at 意向 on the simulator's phone (``sim_friend``: a restarted local
    puppet knows them again), as if added earlier through the web simulator."""
    db = Database(url)
    await db.migrate()
    now = datetime.now(UTC)
    async with db.transaction() as session:
        session.add(Account(id="demo", nickname="n", role="r", created_at=now, updated_at=now))
        for n in range(count):
            handle = f"c{n}"
            session.add(
                Customer(
                    account_id="demo",
                    wechat_id=f"wx_{handle}",
                    display_name=handle,
                    stage="intent",
                    added_at=now,
                )
            )
            session.add(
                Event(
                    account_id="demo",
                    kind="sim_friend",
                    at=now,
                    data={"handle": handle, "name": handle, "contact_id": f"wx_{handle}", "hello": ""},
                )
            )
    await db.close()


def test_a_broadcast_killed_mid_send_reaches_each_customer_at_most_once(tmp_path: Path) -> None:
    """The real CLI (``salesbot run``, local puppet; the transcript file is what reached the
    "platform") is SIGKILLed while sending a confirmed broadcast, and again after each restart:
    every customer gets the message once, except at most one send per kill left in doubt."""
    text = (
        portable_config_text()
        .replace('timezone = "Asia/Shanghai"', f'timezone = "{noon_somewhere()}"')
        .replace("pacing_seconds = [20.0, 45.0]", "pacing_seconds = [0.0, 0.0]")
    )
    write_config(tmp_path, text)
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'salesbot.db'}"
    (tmp_path / "data").mkdir(exist_ok=True)
    asyncio.run(simulated_customers(url, CRASH_CUSTOMERS))
    transcript = tmp_path / "transcript.txt"
    env = {TRANSCRIPT_ENV: str(transcript)}

    def delivered() -> Counter[str]:
        lines = transcript.read_text(encoding="utf-8").splitlines() if transcript.exists() else []
        return Counter(
            chat for chat, _, said in (line.partition("\t") for line in lines) if said == CRASH_TEXT
        )

    bot = Bot(tmp_path, env=env)
    preview = bot.post("/sim/rep", {"text": f"/群发 意向 {CRASH_TEXT}"})
    assert preview["ok"]
    confirming = threading.Thread(target=post_quietly, args=(bot, "/confirm"))
    rng = random.Random(3)
    kills = 0
    for run in range(CRASH_KILLS):
        if run == 0:
            confirming.start()
        else:
            bot = Bot(tmp_path, env=env, wait=False)
        target = kill_point(rng, sum(delivered().values()), CRASH_CUSTOMERS, CRASH_KILLS - run)
        wait_for(lambda: sum(delivered().values()), target, bot.process, 60)
        if sum(delivered().values()) < CRASH_CUSTOMERS:
            kills += 1
        bot.kill()
        if run == 0:
            confirming.join(timeout=30)
    bot = Bot(tmp_path, env=env)  # the last run finishes the job (stopped only once up)
    deadline = time.monotonic() + 120
    rows: list[ScheduledMessage] = []
    while time.monotonic() < deadline:
        rows = asyncio.run(broadcast_rows_of(url))
        if rows and all(row.status in ("sent", "failed") for row in rows):
            break
        time.sleep(0.5)
    output = bot.stop()
    assert "Traceback" not in output, output
    assert kills >= CRASH_KILLS - 1, "the process must really be killed while sending"

    counts = delivered()
    assert [chat for chat, n in counts.items() if n > 1] == [], "a customer got the broadcast twice"
    assert len(rows) == CRASH_CUSTOMERS and len({row.customer_id for row in rows}) == CRASH_CUSTOMERS
    statuses = Counter(row.status for row in rows)
    assert set(statuses) <= {"sent", "failed"}, statuses
    assert statuses["failed"] <= kills, "at most the one send under way per kill is in doubt"
    for row in rows:
        if row.status == "failed":
            assert "delivery unknown" in row.last_error, row.last_error
    assert sum(counts.values()) >= CRASH_CUSTOMERS - statuses["failed"]


def post_quietly(bot: Bot, line: str) -> None:
    """The rep types ``line``; the process may be killed before it answers (that is the point)."""
    with contextlib.suppress(OSError, http.client.HTTPException):
        bot.post("/sim/rep", {"text": line})


async def broadcast_rows_of(url: str) -> list[ScheduledMessage]:
    db = Database(url)
    try:
        async with db.transaction() as session:
            query = select(ScheduledMessage).where(ScheduledMessage.kind == "broadcast")
            return list((await session.exec(query)).all())
    finally:
        await db.close()


async def test_a_template_is_rendered_for_each_customer(db_url: str) -> None:
    async with Harness(make_config(NO_FOLLOWUPS), MONDAY_10AM, database_url=db_url) as sim:
        await intent_customers(sim, ("a", "甲"))
        assert "没有这个群发模板：nope" in await sim.rep("/broadcast 意向 模板:nope")
        reply = await sim.rep("/broadcast 意向 模板:weekend")
        assert "将发送：1 位，每人一条 模板 weekend" in reply, reply
        await sim.rep("/confirm")
        await sim.advance(timedelta(minutes=5))
        got = [t for t in sim.texts_to(sim.contact_id("a")) if "试驾体验活动" in t]
        assert len(got) == 1 and got[0].startswith("甲，这周末店里"), got


async def test_silent_days_and_lifecycle_filters(db_url: str) -> None:
    async with Harness(make_config(NO_FOLLOWUPS), MONDAY_10AM, database_url=db_url) as sim:
        await sim.with_customers(("a", "甲"), ("b", "乙"), ("c", "丙"))
        await sim.advance(timedelta(days=8))
        await sim.customer_says("b", "最近有什么活动吗")
        assert "共 2 位客户" in await sim.rep("/broadcast 沉默7天 好久不见"), "乙 just wrote"
        assert "共 3 位客户" in await sim.rep("/broadcast 全部 好久不见")
        assert "共 2 位客户" in await sim.rep("/broadcast 休眠 好久不见")
        assert "共 1 位客户" in await sim.rep("/broadcast 成长 好久不见")
