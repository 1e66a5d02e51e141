"""Countdown, aftercare and follow-ups end to end, with quiet hours, caps, pacing, pause and restarts."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.services.reach import Verdict
from storage.models import Customer, Event, ScheduledMessage, StageChange
from tests.conftest import MONDAY_10AM, SHANGHAI, make_config
from tests.harness import Harness

NY = ZoneInfo("America/New_York")


def local(message: dict[str, str], tz: ZoneInfo = SHANGHAI) -> datetime:
    return datetime.fromisoformat(message["at"]).astimezone(tz)


# -- countdown ----------------------------------------------------------------------------------


async def test_countdown_ladder_fires_at_its_steps_and_never_after_the_deadline(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep_types("/countdown 11-30 20:00 双十二限时价 @张三")
    assert "倒计时已设置：双十二限时价截止 11-30 20:00" in sim.last_reply()
    await sim.advance(timedelta(days=8))
    ladder = sim.sent("countdown", "c1")
    times = [local(m).strftime("%m-%d %H:%M") for m in ladder]
    assert times == [
        "11-23 20:00",
        "11-27 20:00",
        "11-29 20:00",
        "11-30 17:00",
        "11-30 19:00",
        "11-30 19:30",
        "11-30 19:45",
    ]
    assert (
        "还剩7天" in ladder[0]["text"]
        and "还剩3天" in ladder[1]["text"]
        and "双十二限时价" in ladder[1]["text"]
    )
    assert (
        "最后3小时" in ladder[3]["text"]
        and "最后1小时" in ladder[4]["text"]
        and "最后15分钟" in ladder[-1]["text"]
    )
    deadline = datetime(2026, 11, 30, 20, 0, tzinfo=SHANGHAI)
    assert all(local(m) < deadline for m in ladder)


async def test_countdown_again_replaces_the_plan(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep_types("/countdown @张三 11-30 20:00")
    await sim.rep_types("/countdown @张三 12-01 12:00 新活动")
    cancelled = await sim.rows(
        ScheduledMessage, ScheduledMessage.kind == "countdown", ScheduledMessage.status == "cancelled"
    )
    assert cancelled and all(r.last_error == "replaced by a new countdown" for r in cancelled)
    await sim.advance(timedelta(days=9))
    assert sim.sent("countdown") and all("新活动" in m["text"] for m in sim.sent("countdown"))


async def test_bad_deadline_gets_a_clear_answer_and_changes_nothing(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep_types("/countdown @张三 下辈子")
    assert "看不懂截止时间「下辈子」" in sim.last_reply()
    await sim.rep_types("/countdown @张三")
    assert sim.last_reply().endswith("用法：/countdown <截止时间> [活动名]")
    assert await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown") == []


async def test_countdown_reads_deadlines_as_reps_type_them(sim: Harness) -> None:
    await sim.customer_in_chat()
    reply = await sim.rep("/countdown @张三 周日晚上8点 双十一")
    assert "倒计时已设置：双十一截止 11-29 20:00" in reply
    reply = await sim.rep("/countdown @张三 周日 晚上 8点 双十一")
    assert "倒计时已设置：双十一截止 11-29 20:00" in reply
    reply = await sim.rep("/countdown @张三 下周日")
    assert "截止 12-06 21:00（周日）" in reply, "a date alone ends with the rep's working day (21:00)"
    assert "11-29 21:00（提前7天）" in reply and "12-06 20:45（提前15分钟）" in reply, "no internal 7d, 15m"
    reply = await sim.rep("/countdown @张三 12月12日 20点 年终大促")
    assert "倒计时已设置：年终大促截止 12-12 20:00" in reply


async def test_a_bad_deadline_is_an_error_not_an_offer_name_nor_a_crash(sim: Harness) -> None:
    await sim.customer_in_chat()
    reply = await sim.rep("/countdown @张三 周日 99:99 双十一")
    assert "看不懂时间「99:99」" in reply and reply.endswith("用法：/countdown <截止时间> [活动名]")
    reply = await sim.rep("/countdown @张三 +99999999999d")
    assert "错误编号" not in reply and reply.endswith("用法：/countdown <截止时间> [活动名]")
    assert await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown") == []


async def test_countdown_wording_keeps_the_steps_offset_when_pacing_delays_it(sim: Harness) -> None:
    """Three customers on one deadline: pacing sends the later ones 20-45 s after their step's
    time, and they still read 还剩1天 / 最后1小时, never 最后24小时 or 最后59分钟."""
    people = [("c1", "张三"), ("c2", "李四"), ("c3", "王五")]
    await sim.with_customers(*people)
    for handle, name in people:
        await sim.customer_says(handle, "你好")
        await sim.rep_types(f"/countdown @{name} 11-30 20:00")
    await sim.advance(timedelta(days=8))
    ladder = ["还剩7天", "还剩3天", "还剩1天", "最后3小时", "最后1小时", "最后30分钟", "最后15分钟"]
    late = 0
    for handle, _ in people:
        sent = sim.sent("countdown", handle)
        assert len(sent) == len(ladder)
        for message, wording in zip(sent, ladder, strict=True):
            assert wording in message["text"], (local(message), message["text"])
            late += local(message).second > 0
    assert late >= 4, "pacing held some steps back by seconds"


async def test_the_call_to_action_goes_out_only_when_the_rep_can_act_within_the_hour(sim: Harness) -> None:
    await sim.customer_in_chat()
    # working hours 09:00-21:00, quiet hours from 21:30: the 1h step (22:00) moves to 21:29
    await sim.rep_types("/countdown @张三 周日 23:00 双十一")
    await sim.advance(timedelta(days=7))
    texts = {
        local(m).strftime("%H:%M"): m["text"]
        for m in sim.sent("countdown")
        if "11-29" in local(m).strftime("%m-%d")
    }
    assert set(texts) == {"20:00", "21:29"}, texts
    assert "回复“1”我马上安排" in texts["20:00"], "the rep is at work until 21:00"
    assert "最后1小时" in texts["21:29"] and "回复" not in texts["21:29"], "the rep has left for the day"


async def test_after_downtime_only_the_latest_overdue_step_is_sent(config: Any, db_url: str) -> None:
    async with Harness(config, MONDAY_10AM, database_url=db_url) as first:
        await first.customer_in_chat()
        await first.rep_types("/countdown @张三 11-30 20:00")
    # down from Monday until Sunday 18:00: the 7d, 3d and 1d steps (and 3h at 17:00) were missed
    async with Harness(config, datetime(2026, 11, 30, 18, 0, tzinfo=SHANGHAI), database_url=db_url) as second:
        second.puppet.add_contact("wx_c1", "张三", friend=True)
        second.handles["wx_c1"] = "c1"
        await second.advance(timedelta(hours=3))
    times = [local(m).strftime("%m-%d %H:%M") for m in second.sent("countdown")]
    assert times == ["11-30 18:00", "11-30 19:00", "11-30 19:30", "11-30 19:45"], "3h sent late, once"
    expired = await second.rows(
        ScheduledMessage, ScheduledMessage.status == "expired", ScheduledMessage.kind == "countdown"
    )
    assert {r.step for r in expired} == {"7d", "3d", "1d"}


# -- orders and aftercare -----------------------------------------------------------------------


async def test_order_moves_stage_stops_countdown_and_plans_aftercare(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep_types("/countdown @张三 11-30 20:00")
    await sim.rep_types("/order SUV")
    reply = sim.last_reply()
    assert "已记录成交：SUV" in reply and "阶段：潜在 → 下单" in reply
    countdown = await sim.rows(ScheduledMessage, ScheduledMessage.kind == "countdown")
    assert {r.status for r in countdown} == {"cancelled"}
    await sim.advance(timedelta(days=31))
    assert sim.sent("countdown") == []
    care = sim.sent("aftercare", "c1")
    assert [local(m).strftime("%m-%d %H:%M") for m in care] == [
        "11-24 10:00",
        "11-26 10:00",
        "11-30 10:00",
        "12-23 10:00",
    ]
    assert "接下来的安排" in care[0]["text"] and "SUV" in care[0]["text"]


async def test_second_order_is_a_repeat(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep_types("/order @张三 SUV")
    await sim.advance(timedelta(hours=2))
    await sim.rep_types("/成交 @张三 保养套餐")
    assert "阶段：下单 → 复购" in sim.last_reply()
    [c] = await sim.rows(Customer)
    assert c.stage == "repeat"
    changes = await sim.rows(StageChange, StageChange.reason == "order")
    assert [ch.to_stage for ch in changes] == ["ordered", "repeat"]


async def test_order_typed_twice_asks_before_a_second_aftercare_series(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep_types("/order @张三 SUV")
    await sim.advance(timedelta(seconds=40))
    await sim.rep_types("/order @张三 SUV")
    reply = sim.last_reply()
    assert "刚记录过一次成交（SUV）" in reply and "/order SUV 确认" in reply
    assert len(await sim.rows(Event, Event.kind == "order")) == 1, "nothing recorded"
    await sim.advance(timedelta(days=31))
    days = [local(m).strftime("%m-%d") for m in sim.sent("aftercare", "c1")]
    assert days == ["11-24", "11-26", "11-30", "12-23"], "each aftercare message once"


async def test_a_confirmed_or_later_repeat_order_replaces_the_pending_aftercare(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep_types("/order @张三 SUV")
    await sim.rep_types("/order @张三 保养套餐 确认")
    reply = sim.last_reply()
    assert "已记录成交：保养套餐" in reply and "阶段：下单 → 复购" in reply
    assert "上一单还没发的 4 条售后关怀已取消" in reply
    await sim.advance(timedelta(days=2))  # T+1 of the second order goes out
    await sim.rep_types("/order @张三 轮胎")  # outside the window: no confirmation needed
    assert "上一单还没发的 3 条售后关怀已取消" in sim.last_reply()
    await sim.advance(timedelta(days=40))
    sent = [(local(m).strftime("%m-%d"), m["text"]) for m in sim.sent("aftercare", "c1")]
    assert [day for day, _ in sent] == ["11-24", "11-26", "11-28", "12-02", "12-25"], "never two series"
    assert "保养套餐" in sent[0][1] and not any("保养套餐" in text for _, text in sent[1:])
    assert all("轮胎" in text for _, text in sent[1:3]), "T+1 and T+3 name the product; T+7 and T+30 need not"
    assert not any("SUV" in text for _, text in sent), "the first order's series was replaced before it began"


# -- follow-ups ---------------------------------------------------------------------------------


async def test_followups_go_to_the_silent_only(sim: Harness) -> None:
    for handle, name in (("c1", "张三"), ("c2", "李四"), ("c3", "王五")):
        await sim.friend_request(handle, name)
    await sim.advance(timedelta(hours=2))
    await sim.customer_says("c2", "你好")  # replied
    await sim.rep_types("/order @王五")  # ordered
    await sim.advance(timedelta(days=4))
    assert [local(m).strftime("%m-%d %H:%M") for m in sim.sent("followup", "c1")] == [
        "11-24 10:30",
        "11-26 10:30",
    ]
    assert sim.sent("followup", "c2") == [] and sim.sent("followup", "c3") == []
    # the day-3 question reads as Chinese: no space after its question mark
    third = sim.sent("followup", "c1")[1]["text"]
    assert "？" in third and "？ " not in third, third


# -- schedule, cancel, pause, resume ------------------------------------------------------------


async def test_schedule_and_cancel(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep_types("/order @张三 SUV")
    await sim.rep_types("/schedule")
    listing = sim.last_reply()
    ids = [int(line.split()[0][1:]) for line in listing.splitlines() if line.startswith("#")]
    assert len(ids) == 4 and "2026-11-24 10:00 售后关怀 成交后第1天" in listing
    await sim.rep_types(f"/cancel {ids[0]}")
    assert "已取消 1 条" in sim.last_reply()
    await sim.rep_types("/cancel 99999")
    assert "没有待发的消息 #99999" in sim.last_reply()
    await sim.rep_types("/取消 all")
    assert "已取消 3 条" in sim.last_reply()
    await sim.advance(timedelta(days=31))
    assert sim.sent("aftercare") == []


async def test_opt_out_pauses_everything_and_resume_restores(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep_types("/order @张三 SUV")
    await sim.customer_says("c1", "以后别再发了")
    [alert] = sim.sent("alert")
    assert "已暂停对TA的全部自动消息（4 条待发）" in alert["text"] and "/resume @#1" in alert["text"]
    assert not sim.sent("suggestion")
    await sim.advance(timedelta(days=2))
    assert sim.sent("aftercare") == []
    await sim.rep_types("/resume @张三")
    assert "已恢复自动消息（3 条待发消息恢复" in sim.last_reply()  # T+1 passed while paused and stays unsent
    await sim.advance(timedelta(days=30))
    assert [local(m).strftime("%m-%d") for m in sim.sent("aftercare")] == ["11-26", "11-30", "12-23"]


async def test_manual_pause(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep_types("/order @张三 SUV")
    await sim.rep_types("/暂停")
    assert "已暂停自动消息（4 条" in sim.last_reply()
    await sim.advance(timedelta(days=31))
    assert sim.sent("aftercare") == []
    await sim.rep_types("/resume")
    await sim.rep_types("/resume")
    assert "没有暂停" in sim.last_reply()


# -- gentle reach -------------------------------------------------------------------------------


async def test_quiet_hours_hold_automated_messages_until_morning(db_url: str) -> None:
    config = make_config({"aftercare": {"at": "22:00:00"}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.customer_in_chat()
        await sim.rep_types("/order @张三")
        await sim.advance(timedelta(days=2))
    [first, *_] = sim.sent("aftercare")
    assert local(first).strftime("%m-%d %H:%M") == "11-25 08:30"


async def test_customer_daily_cap_defers_to_the_next_day(db_url: str) -> None:
    """T+1 aftercare (10:00) and the T+1 follow-up (10:30) fall on one day; with a cap of one, the
    follow-up waits for the next morning (it is still valid then)."""
    config = make_config(
        {"reach": {"customer_daily_cap": 1}, "followup": {"skip_if_ordered": False, "valid_hours": 48.0}}
    )
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.friend_request("c1", "张三")
        await sim.advance(timedelta(minutes=1))
        await sim.rep_types("/order @张三")
        await sim.advance(timedelta(days=1, hours=23))
    assert [local(m).strftime("%m-%d %H:%M") for m in sim.sent("aftercare")] == ["11-24 10:00"]
    assert [local(m).strftime("%m-%d %H:%M") for m in sim.sent("followup")] == ["11-25 08:30"]


def test_steps_need_distinct_days() -> None:
    import pytest

    from bot.errors import ConfigError

    steps = [{"days": 1, "template": "aftercare/t1.txt.j2"}, {"days": 1, "template": "aftercare/t3.txt.j2"}]
    with pytest.raises(ConfigError, match=r"aftercare\.steps: each step needs its own number of days"):
        make_config({"aftercare": {"steps": steps}})


async def test_pacing_spaces_automated_sends_of_one_account(sim: Harness) -> None:
    for handle, name in (("c1", "张三"), ("c2", "李四"), ("c3", "王五")):
        await sim.customer_in_chat(handle, name)
        await sim.rep_types(f"/order @{name}")
    await sim.advance(timedelta(days=1, hours=1))
    times = sorted(local(m) for m in sim.sent("aftercare"))
    assert len(times) == 3
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(20 <= gap <= 46 for gap in gaps), gaps


async def test_account_daily_cap(db_url: str) -> None:
    config = make_config({"reach": {"account_daily_cap": 2}, "aftercare": {"valid_hours": 48.0}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        for handle, name in (("c1", "张三"), ("c2", "李四"), ("c3", "王五")):
            await sim.customer_in_chat(handle, name)
            await sim.rep_types(f"/order @{name}")
        await sim.advance(timedelta(days=1, hours=2))
        assert len(sim.sent("aftercare")) == 2
        await sim.advance(timedelta(days=1))
    assert local(sim.sent("aftercare")[2]).strftime("%m-%d %H:%M") == "11-25 08:30"


async def test_a_plan_that_cannot_be_delivered_in_time_tells_the_rep(db_url: str) -> None:
    config = make_config({"reach": {"customer_daily_cap": 1}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.customer_in_chat()
        await sim.rep_types("/countdown @张三 明天 20:00")
        await sim.advance(timedelta(days=2))
    days = [local(m).strftime("%m-%d %H:%M") for m in sim.sent("countdown")]
    assert days == ["11-23 20:00", "11-24 17:00"], "one per local day for this customer"
    alerts = [m["text"] for m in sim.sent("alert")]
    assert alerts and all("没有发出" in a and "今天收到的自动消息已达上限" in a for a in alerts)
    assert not any("cap" in a or "countdown" in a for a in alerts), "reps read Chinese, not internals"


async def test_rep_replies_and_welcomes_are_not_held_by_quiet_hours(db_url: str) -> None:
    late = datetime(2026, 11, 23, 23, 0, tzinfo=SHANGHAI)
    async with Harness(make_config(), late, database_url=db_url) as sim:
        await sim.friend_request("c1", "张三")
        await sim.advance(timedelta(minutes=1))
        await sim.customer_says("c1", "太贵了")
        await sim.rep_types("/send 1")
        await sim.advance(timedelta(minutes=1))
    assert len(sim.sent("welcome")) == 1 and len(sim.sent("reply")) == 1


# -- other time zones ---------------------------------------------------------------------------


async def test_aftercare_keeps_local_time_across_dst_in_new_york(db_url: str) -> None:
    config = make_config({"timezone": "America/New_York"})
    start = datetime(2026, 3, 6, 12, 0, tzinfo=NY)  # Friday before the spring-forward Sunday
    async with Harness(config, start, database_url=db_url) as sim:
        await sim.customer_in_chat()
        await sim.rep_types("/order @张三")
        await sim.advance(timedelta(days=8))
    care = sim.sent("aftercare")[:2]
    assert [local(m, NY).strftime("%m-%d %H:%M") for m in care] == ["03-07 10:00", "03-09 10:00"]
    assert [datetime.fromisoformat(m["at"]).utcoffset() for m in care] == [
        timedelta(hours=-5),
        timedelta(hours=-4),
    ]


async def test_a_customer_at_the_daily_cap_holds_back_no_one_else(sim: Harness) -> None:
    """A cap is one customer's: their row waits while the account's other paced sends
    keep their pace today (they once queued behind it, past tomorrow's quiet hours). The gate says
    张三 is at his cap, as ReachPolicy would after a busy day; everything else is the real gate."""
    gate = sim.bot.dispatcher.gate
    assert gate is not None
    real = gate.verdict

    async def capped(
        session: Any, row: ScheduledMessage, now: datetime, memo: Any = None, **kw: Any
    ) -> Verdict:
        if row.customer_id == 1:
            return Verdict(False, now + timedelta(hours=2), "customer daily cap (3) reached")
        return await real(session, row, now, memo, **kw)

    setattr(gate, "verdict", capped)  # noqa: B010
    for handle, name in (("c1", "张三"), ("c2", "李四"), ("c3", "王五")):
        await sim.customer_in_chat(handle, name)
        await sim.rep_types(f"/order @{name}")
    await sim.advance(timedelta(days=1, hours=1))
    assert sim.sent("aftercare", "c1") == []
    others = sorted(local(m) for handle in ("c2", "c3") for m in sim.sent("aftercare", handle))
    assert len(others) == 2 and others[1] - others[0] < timedelta(minutes=1), others
