"""The send-budget planner: a plan whose messages cannot all go out in their windows (pacing, daily
caps, quiet hours, against everything already planned) is reported in the command's reply at once."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.domain.budget import Limits, Sent, Slot, late_slots
from bot.domain.schedule import QuietHours
from tests.conftest import MONDAY_10AM, make_config
from tests.harness import Harness

SHANGHAI = ZoneInfo("Asia/Shanghai")
LIMITS = Limits(
    quiet=QuietHours(time(21, 30), time(8, 30), SHANGHAI),
    tz=SHANGHAI,
    customer_daily_cap=4,
    account_daily_cap=200,
    gap=timedelta(seconds=45),
)
DEADLINE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai


def last_quarter(n: int) -> list[Slot]:
    """n customers' "15 minutes left" steps, all due at once, each good until the deadline."""
    due = DEADLINE - timedelta(minutes=15)
    return [Slot(f"k{c}", c, due, DEADLINE, c) for c in range(n)]


def test_one_step_fits_and_forty_at_once_do_not() -> None:
    assert late_slots(last_quarter(1), LIMITS) == []
    late = late_slots(last_quarter(40), LIMITS)
    assert len(late) == 19  # 15 minutes at 45 s apart: 21 sends (at 0, 45 s, ... 15 min)
    assert [s.key for s in late] == [f"k{c}" for c in range(21, 40)]  # the last planned miss out


def test_quiet_hours_and_caps_push_a_step_past_its_window() -> None:
    at_night = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)  # 22:00: quiet until 08:30
    [late] = late_slots([Slot("n", 1, at_night, at_night + timedelta(hours=2))], LIMITS)
    assert late.key == "n"
    day = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # 10:00 local
    capped = Sent(day=day.astimezone(SHANGHAI).date(), account_today=0, customers_today={1: 4})
    assert len(late_slots([Slot("c", 1, day, day + timedelta(hours=2))], LIMITS, capped)) == 1
    assert late_slots([Slot("c", 2, day, day + timedelta(hours=2))], LIMITS, capped) == []


async def test_forty_same_deadline_countdowns_warn_and_one_fits_silently(db_url: str) -> None:
    people = [(f"c{n}", f"客户{n:02d}") for n in range(40)]
    async with Harness(make_config(), MONDAY_10AM, database_url=db_url) as sim:
        await sim.with_customers(*people)
        first = await sim.rep("/countdown @客户00 今天20:00")
        assert "注意" not in first and "来不及" not in first, first
        replies = [await sim.rep(f"/countdown @{name} 今天20:00") for _, name in people[1:]]
        warned = [r for r in replies if "来不及" in r]
        assert warned and "来不及" not in replies[0]  # the first ones still fit
        last = replies[-1]
        assert "这次有 2 条提醒（提前30分钟、提前15分钟）来不及在时限内发出" in last, last
        assert "同一时段已排了" in last and "建议" in last and "截止时间" in last
        for word in ("pacing", "countdown", "cap", "quiet"):
            assert word not in last


async def test_an_order_whose_aftercare_would_miss_the_daily_cap_says_so(db_url: str) -> None:
    """With room for two automated messages a day, a third order's first aftercare step cannot go out
    on its day (its window is 12 hours); the reply says which step and what to do."""
    config = make_config({"reach": {"account_daily_cap": 2}, "followup": {"steps": []}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.with_customers(("a", "甲"), ("b", "乙"), ("c", "丙"))
        assert "来不及" not in await sim.rep("/order @甲")
        assert "来不及" not in await sim.rep("/order @乙")
        third = await sim.rep("/order @丙")
        # named as /schedule and the digest name them (成交后第N天), a sentence that ends
        assert "这次有 4 条售后关怀（成交后第1天、成交后第3天、成交后第7天、成交后第30天）来不及" in third, (
            third
        )
        assert "/cancel" in third and third.endswith("。") and "这几条会被放弃" in third


def test_one_late_message_is_not_called_several() -> None:
    from bot.commands.scheduling import budget_warning

    one = budget_warning("1 条提醒（提前15分钟）", 0, "早点开始跟进", late=1)
    assert "这条会被放弃" in one and "这几条" not in one and one.endswith("。")
    assert "这几条会被放弃" in budget_warning("2 条提醒（提前30分钟、提前15分钟）", 3, "早点开始跟进", late=2)
