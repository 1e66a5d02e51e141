"""The value-icebreaker welcome, end to end: LocalPuppet -> real Wechaty -> salesbot -> storage -> out."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlmodel import col, select

from bot.config import Config
from storage.models import Customer, CustomerTag, Event, OutgoingMessage, ScheduledMessage, StageChange
from storage.repositories import Outbox
from tests.conftest import MONDAY_10AM, SHANGHAI, make_config
from tests.harness import Harness


async def test_friend_request_is_accepted_customer_created_and_welcomed_after_a_pause(
    sim: Harness,
) -> None:
    await sim.friend_request("c1", "张三", "你好")

    assert sim.puppet.accepted, "the friend request was not accepted through Wechaty"
    assert sim.puppet.is_friend("wx_c1")
    [customer] = await sim.rows(Customer)
    assert (customer.wechat_id, customer.display_name, customer.stage) == ("wx_c1", "张三", "stranger")
    assert customer.added_at == MONDAY_10AM
    [change] = await sim.rows(StageChange)
    assert (change.from_stage, change.to_stage) == (None, "stranger")
    assert sim.output == [], "the welcome must wait for the human-like pause"

    await sim.advance(timedelta(seconds=2))
    assert sim.output == [], "default pause is at least 3 seconds"
    await sim.advance(timedelta(seconds=10))

    [welcome] = sim.sent("welcome")
    sent_at = datetime.fromisoformat(welcome["at"])
    assert timedelta(seconds=3) <= sent_at - MONDAY_10AM <= timedelta(seconds=8)
    assert welcome["to"] == "c1" and welcome["account"] == "demo"
    assert sim.puppet.sent[0].conversation_id == "wx_c1"


async def test_default_welcome_has_all_seven_icebreaker_parts(sim: Harness, config: Config) -> None:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))

    text = sim.sent("welcome")[0]["text"]
    profile = config.accounts[0].profile
    for part in (
        profile.nickname,
        profile.role,
        profile.service,
        "每天 09:00-21:00",
        profile.next_step,
        profile.gift,
        profile.hook_question,
    ):
        assert part in text, f"welcome lacks {part!r}:\n{text}"
    assert text.startswith("张三您好")
    assert "休息时间" not in text, "sent inside working hours"
    assert text.rstrip().endswith("？"), "the welcome should end with a question that invites a reply"


async def test_channel_rule_picks_variant_and_tags_customer(sim: Harness) -> None:
    await sim.friend_request("c1", "张三", "我是从小红书看到你们的")
    await sim.friend_request("c2", "李四", "朋友推荐我来的")
    await sim.friend_request("c3", "王五", "hello")
    await sim.advance(timedelta(minutes=1))

    assert "感谢您从小红书找到我" in sim.sent("welcome", "c1")[0]["text"]
    assert "谢谢朋友的推荐" in sim.sent("welcome", "c2")[0]["text"]
    default = sim.sent("welcome", "c3")[0]["text"]
    assert "小红书" not in default and "推荐" not in default

    customers = {c.wechat_id: c for c in await sim.rows(Customer)}
    assert customers["wx_c1"].source_channel == "小红书"
    assert customers["wx_c3"].source_channel == ""
    [tag] = await sim.rows(CustomerTag, CustomerTag.customer_id == customers["wx_c1"].id)
    assert (tag.group, tag.value, tag.source, tag.added_by) == ("channel", "小红书", "channel_rule", "system")
    assert await sim.rows(CustomerTag, CustomerTag.customer_id == customers["wx_c3"].id) == []


async def test_channel_keywords_match_case_insensitively(sim: Harness) -> None:
    await sim.friend_request("c1", "张三", "saw you on XHS")
    await sim.advance(timedelta(minutes=1))
    assert "小红书" in sim.sent("welcome", "c1")[0]["text"]


async def test_outside_working_hours_welcome_says_when_rep_is_back(config: Config, db_url: str) -> None:
    late_sunday = datetime(2026, 11, 22, 23, 30, tzinfo=SHANGHAI)
    async with Harness(config, late_sunday, database_url=db_url) as sim:
        await sim.friend_request("c1", "张三")
        await sim.advance(timedelta(minutes=1))
    text = sim.sent("welcome")[0]["text"]
    assert "现在是休息时间" in text and "明天 09:00" in text


async def test_weekday_only_rep_names_the_next_working_day(db_url: str) -> None:
    config = make_config(
        {
            "accounts": [
                {
                    **make_config().accounts[0].model_dump(mode="json"),
                    "profile": {
                        **make_config().accounts[0].profile.model_dump(mode="json"),
                        "working_hours": {"start": "09:00", "end": "18:00", "days": [1, 2, 3, 4, 5]},
                    },
                }
            ]
        }
    )
    saturday = datetime(2026, 11, 28, 11, 0, tzinfo=SHANGHAI)
    async with Harness(config, saturday, database_url=db_url) as sim:
        await sim.friend_request("c1", "张三")
        await sim.advance(timedelta(minutes=1))
    text = sim.sent("welcome")[0]["text"]
    assert "周一至周五 09:00-18:00" in text
    assert "周一 09:00" in text


async def test_replayed_friendship_event_never_welcomes_twice(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    await sim.replay_friend_request("c1")  # before the welcome went out
    await sim.advance(timedelta(minutes=1))
    await sim.replay_friend_request("c1")  # after
    await sim.advance(timedelta(minutes=1))

    assert len(sim.sent("welcome")) == 1
    assert len(await sim.rows(ScheduledMessage, ScheduledMessage.kind == "welcome")) == 1
    assert len(await sim.rows(ScheduledMessage, ScheduledMessage.kind == "followup")) == 2, (
        "follow-ups once too"
    )
    assert len(await sim.rows(Event, Event.kind == "friend_request")) == 1, "replays are logged once"


async def test_confirm_event_after_accept_does_not_welcome_again(config: Config, db_url: str) -> None:
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        sim.puppet.confirm_after_accept = True
        await sim.friend_request("c1", "张三")
        await sim.advance(timedelta(minutes=1))
        assert await sim.rows(Event, Event.kind == "friend_confirmed"), "the puppet's Confirm reached us"
    assert len(sim.sent("welcome")) == 1


async def test_friendship_confirmed_elsewhere_creates_customer_and_welcomes(sim: Harness) -> None:
    """The rep accepted on the phone: the platform only reports the confirmed friendship."""
    await sim.friendship_confirmed("c1", "张三")
    [customer] = await sim.rows(Customer)
    assert customer.stage == "stranger"
    await sim.advance(timedelta(minutes=1))
    assert sim.puppet.accepted == [], "a confirmed friendship is not accepted again"
    assert len(sim.sent("welcome", "c1")) == 1


async def test_readd_within_window_is_not_welcomed_again_but_after_window_is(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    await sim.delete("c1")
    await sim.advance(timedelta(days=3))
    await sim.friend_request("c1", "张三")  # a new request within 30 days
    await sim.advance(timedelta(minutes=1))
    assert len(sim.sent("welcome")) == 1

    await sim.delete("c1")
    await sim.advance(timedelta(days=31))
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    assert len(sim.sent("welcome")) == 2


async def test_customer_who_deletes_before_the_welcome_is_marked_churned(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    await sim.delete("c1")
    await sim.advance(timedelta(minutes=1))

    assert sim.sent("welcome") == [] and [s for s in sim.puppet.sent if s.conversation_id == "wx_c1"] == []
    [alert] = sim.sent("alert")
    assert alert["to"] == "console" and "已不是好友" in alert["text"]
    [customer] = await sim.rows(Customer)
    assert customer.deleted_at is not None
    assert {r.status for r in await sim.rows(ScheduledMessage, ScheduledMessage.kind == "followup")} == {
        "cancelled"
    }
    [row] = await sim.rows(ScheduledMessage, ScheduledMessage.kind == "welcome")
    assert row.status == "failed" and "no longer a friend" in row.last_error
    [log] = await sim.rows(OutgoingMessage, OutgoingMessage.kind == "welcome")
    assert log.status == "failed"
    assert await sim.rows(Event, Event.kind == "customer_deleted")
    assert await sim.rows(Event, Event.kind == "welcome_failed")


async def test_customer_messages_are_logged_once_with_last_inbound_time(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=5))
    await sim.customer_says("c1", "你好，想了解一下")

    [customer] = await sim.rows(Customer)
    assert customer.last_inbound_at == MONDAY_10AM + timedelta(minutes=5)
    assert customer.last_outbound_at is not None
    [inbound] = await sim.rows(Event, Event.kind == "message_in")
    assert inbound.text == "你好，想了解一下" and inbound.customer_id == customer.id
    outbound = await sim.rows(Event, Event.kind == "message_out")
    # the welcome, and the coaching card the first reply sent the rep's console
    assert [e.data["kind"] for e in outbound] == ["welcome", "coach"]


async def test_bot_ignores_echo_of_its_own_send(sim: Harness) -> None:
    """The local puppet echoes sends back as self messages, like the puppet service does."""
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    assert len(sim.puppet.sent) == 1
    assert await sim.rows(Event, Event.kind == "message_in") == []
    assert sim.bot.transports["demo"].errors == []  # type: ignore[attr-defined]


async def test_pending_welcome_survives_restart_and_is_sent_once(config: Config, db_url: str) -> None:
    async with Harness(config, MONDAY_10AM, database_url=db_url) as first:
        await first.friend_request("c1", "张三")
    assert first.output == []

    async with Harness(config, MONDAY_10AM + timedelta(minutes=2), database_url=db_url) as second:
        second.puppet.add_contact("wx_c1", "张三", friend=True)
        second.handles["wx_c1"] = "c1"
        await second.advance(timedelta(seconds=1))
        await second.advance(timedelta(hours=1))
    assert len(second.sent("welcome")) == 1

    async with Harness(config, MONDAY_10AM + timedelta(hours=2), database_url=db_url) as third:
        third.puppet.add_contact("wx_c1", "张三", friend=True)
        await third.advance(timedelta(days=1))
    assert third.sent("welcome") == [], "the welcome went out once, before this restart"


async def test_welcome_due_while_down_too_long_expires(config: Config, db_url: str) -> None:
    async with Harness(config, MONDAY_10AM, database_url=db_url) as first:
        await first.friend_request("c1", "张三")
    async with Harness(config, MONDAY_10AM + timedelta(days=2), database_url=db_url) as second:
        second.puppet.add_contact("wx_c1", "张三", friend=True)
        await second.advance(timedelta(seconds=1))
        [row] = await second.rows(ScheduledMessage, ScheduledMessage.kind == "welcome")
    assert second.sent("welcome") == []
    assert row.status == "expired"


async def test_row_claimed_by_a_crashed_process_is_not_sent_twice(config: Config, db_url: str) -> None:
    """Crash after the send began (log says 'sending'): delivery is unknown, so never send again."""
    async with Harness(config, MONDAY_10AM, database_url=db_url) as first:
        await first.friend_request("c1", "张三")
        await first.friend_request("c2", "李四")
        async with first.bot.db.transaction() as session:
            c1, c2 = (
                await session.exec(
                    select(ScheduledMessage)
                    .where(ScheduledMessage.kind == "welcome")
                    .order_by(col(ScheduledMessage.id))
                )
            ).all()
            c1.status = c2.status = "claimed"  # both claimed when the process died...
            session.add(
                OutgoingMessage(
                    account_id="demo",
                    customer_id=c1.customer_id,
                    conversation_id="wx_c1",
                    kind="welcome",
                    text="...",
                    idempotency_key=c1.idempotency_key,
                    status="sending",
                    created_at=MONDAY_10AM,
                )
            )  # ...c1 mid-send
    async with Harness(config, MONDAY_10AM + timedelta(minutes=1), database_url=db_url) as second:
        for handle, name in (("c1", "张三"), ("c2", "李四")):
            second.puppet.add_contact(f"wx_{handle}", name, friend=True)
            second.handles[f"wx_{handle}"] = handle
        await second.advance(timedelta(minutes=1))
        statuses = {
            r.customer_id: (r.status, r.last_error)
            for r in await second.rows(ScheduledMessage, ScheduledMessage.kind == "welcome")
        }
    to_customers = [m["to"] for m in second.output if m["to"] != "console"]
    assert to_customers == ["c2"], "c2 never reached the platform, so it is sent"
    [alert] = [m["text"] for m in second.output if m["to"] == "console"]
    assert "【张三" in alert and "可能没有发出" in alert, "the rep is asked to check c1's chat"
    assert statuses[c1.customer_id][0] == "failed" and "delivery unknown" in statuses[c1.customer_id][1]
    assert statuses[c2.customer_id][0] == "sent"


async def test_template_error_at_send_time_fails_the_row_and_alerts_the_rep(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    async with sim.bot.db.transaction() as session:
        [row] = (await session.exec(select(ScheduledMessage).where(ScheduledMessage.kind == "welcome"))).all()
        row.template = "welcome/missing.txt.j2"
    await sim.advance(timedelta(minutes=1))
    [row] = await sim.rows(ScheduledMessage, ScheduledMessage.kind == "welcome")
    assert row.status == "failed" and "missing.txt.j2" in row.last_error
    assert [m for m in sim.output if m["to"] == "c1"] == [], "nothing reaches the customer"
    [alert] = sim.sent("alert")
    assert alert["to"] == "console" and "欢迎语" in alert["text"] and "missing.txt.j2" in alert["text"]
    assert await sim.rows(Event, Event.kind == "welcome_failed")


async def test_a_burst_of_new_friends_is_welcomed_at_a_human_pace(sim: Harness) -> None:
    """Four people add the rep within a second (a live stream): their welcomes go out at least
    welcome.min_gap_seconds apart, each still within its validity."""
    for n in range(4):
        await sim.friend_request(f"c{n}", f"客户{n}")
    await sim.advance(timedelta(minutes=2))
    times = sorted(datetime.fromisoformat(m["at"]) for m in sim.sent("welcome"))
    assert len(times) == 4, "everyone is welcomed"
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    low = 4.0  # welcome.min_gap_seconds defaults to [4, 9]
    assert all(gap >= low for gap in gaps), gaps
    assert times[-1] - times[0] < timedelta(minutes=1), "paced, not postponed"


async def test_a_burst_of_welcomes_waits_once_each_not_once_a_dispatch_round(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten people add the rep at once: a batch sends one welcome and gives each of the others its
    own later slot (the gate checks again then, and may move it once more by the gap it draws),
    instead of putting them all back to the same moment, round after round, until their turn."""
    deferred: Counter[int] = Counter()
    defer = Outbox.defer

    async def counted(outbox: Outbox, row_id: int, until: datetime, at: datetime, reason: str) -> None:
        deferred[row_id] += 1
        await defer(outbox, row_id, until, at, reason)

    monkeypatch.setattr(Outbox, "defer", counted)
    for n in range(10):
        await sim.friend_request(f"c{n}", f"客户{n}")
    await sim.advance(timedelta(minutes=3))
    times = sorted(datetime.fromisoformat(m["at"]) for m in sim.sent("welcome"))
    assert len(times) == 10
    assert all((b - a).total_seconds() >= 4.0 for a, b in itertools.pairwise(times))
    # each row waits for its slot about once (it was 64 deferrals, one row 16 times)
    assert sum(deferred.values()) <= 12 and max(deferred.values()) <= 2, deferred


async def test_with_no_gap_configured_a_burst_of_welcomes_goes_out_in_one_batch() -> None:
    config = make_config({"welcome": {"delay_seconds": [0.0, 0.0], "min_gap_seconds": [0.0, 0.0]}})
    async with Harness(config, MONDAY_10AM) as sim:
        for n in range(10):
            await sim.friend_request(f"c{n}", f"客户{n}")
        await sim.advance(timedelta(seconds=1))
        rows = await sim.rows(ScheduledMessage, ScheduledMessage.kind == "welcome")
        assert len(rows) == 10 and {row.status for row in rows} == {"sent"}
        assert not [row for row in rows if (row.last_error or "").startswith("deferred")]
