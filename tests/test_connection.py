"""Connection loss on the in-process puppet: what falls due while an account is offline waits and goes
out once; a send that broke off midway is never repeated, and its echo settles it. (The same over
gRPC against the official gateway: tests/test_gateway_e2e.py.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from bot.app import SalesBot
from bot.clock import VirtualClock
from bot.errors import TransportError
from bot.media import Attachment
from bot.transport.backoff import Backoff
from bot.transport.base import ConnectionListener, EventSink, FriendRequest, LoginListener
from storage.models import Customer, Event, OutgoingMessage, ScheduledMessage
from tests.conftest import MONDAY_10AM
from tests.harness import Harness


async def customer_with_countdown(sim: Harness) -> str:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    await sim.customer_says("c1", "你好")
    # the 1-day step falls at 11-23 19:00 local (the supervisor's digest goes at 20:00)
    await sim.rep_types("/countdown 11-24 19:00 限时价 @张三")
    return sim.contact_id("c1")


async def test_a_step_due_while_offline_waits_and_goes_out_once_when_back(sim: Harness) -> None:
    contact = await customer_with_countdown(sim)
    transport = sim.bot.transports[sim.account_id]
    await sim.advance(timedelta(hours=8))  # 18:01
    sim.puppet.go_offline()
    await sim.advance(timedelta(minutes=1))
    assert not transport.connected

    await sim.advance(timedelta(hours=1, minutes=30))  # 19:32: the step fell due at 19:00
    step = (await sim.rows(ScheduledMessage, ScheduledMessage.step == "1d"))[0]
    assert step.status == "pending"
    assert not any("限时价" in text for text in sim.texts_to(contact))

    sim.puppet.go_online()
    await sim.advance(timedelta(seconds=1))
    assert transport.connected
    reminders = [text for text in sim.texts_to(contact) if "限时价" in text]
    assert len(reminders) == 1
    await sim.advance(timedelta(minutes=30))
    assert len([text for text in sim.texts_to(contact) if "限时价" in text]) == 1
    step = (await sim.rows(ScheduledMessage, ScheduledMessage.step == "1d"))[0]
    assert step.status == "sent"


async def test_a_send_that_broke_off_is_never_repeated_and_its_echo_settles_it(sim: Harness) -> None:
    contact = await customer_with_countdown(sim)
    await sim.advance(timedelta(hours=8, minutes=58))  # 18:59
    sim.puppet.break_after_next_delivery = True  # delivered, but the answer never comes back
    await sim.advance(timedelta(minutes=2))
    step = (await sim.rows(ScheduledMessage, ScheduledMessage.step == "1d"))[0]
    assert step.status == "failed" and "delivery unknown" in step.last_error
    [outgoing] = await sim.rows(OutgoingMessage, OutgoingMessage.idempotency_key == step.idempotency_key)
    assert outgoing.status == "unknown"
    assert not sim.bot.transports[sim.account_id].connected

    sim.puppet.go_online()  # logs in again; the delivered message comes back as the account's own
    await sim.advance(timedelta(seconds=1))

    step = (await sim.rows(ScheduledMessage, ScheduledMessage.step == "1d"))[0]
    assert step.status == "sent", step.last_error
    [outgoing] = await sim.rows(OutgoingMessage, OutgoingMessage.idempotency_key == step.idempotency_key)
    assert outgoing.status == "sent" and outgoing.echoed_at is not None
    assert len([text for text in sim.texts_to(contact) if "限时价" in text]) == 1
    # the doubt was settled before the account could tell the rep: no alert about it
    console = [m.text for m in sim.puppet.sent if m.conversation_id == "filehelper"]
    assert not any("没有发出" in text for text in console)


async def test_without_an_echo_the_rep_is_told_to_check_the_chat(sim: Harness) -> None:
    contact = await customer_with_countdown(sim)
    sim.puppet.echo_self_messages = False  # a puppet that never reports the account's own sends
    await sim.advance(timedelta(hours=8, minutes=58))
    sim.puppet.break_after_next_delivery = True
    await sim.advance(timedelta(minutes=2))
    sim.puppet.go_online()
    await sim.advance(timedelta(minutes=5))

    step = (await sim.rows(ScheduledMessage, ScheduledMessage.step == "1d"))[0]
    assert step.status == "failed" and "delivery unknown" in step.last_error
    assert len([text for text in sim.texts_to(contact) if "限时价" in text]) == 1  # never re-sent
    console = [m.text for m in sim.puppet.sent if m.conversation_id == "filehelper"]
    [alert] = [text for text in console if "可能没有发出" in text]
    assert "【张三" in alert and "倒计时" in alert and "手动补发" in alert


async def test_an_alert_raised_while_offline_reaches_the_console_after_reconnecting(sim: Harness) -> None:
    await sim.friend_request("c1", "张三")
    await sim.advance(timedelta(minutes=1))
    sim.puppet.go_offline()
    await sim.customer_says("c1", "退订，别再发了")
    assert not any("暂停" in m.text for m in sim.puppet.sent)

    sim.puppet.go_online()
    await sim.advance(timedelta(seconds=1))
    alerts = [m.text for m in sim.puppet.sent if m.conversation_id == "filehelper" and "暂停" in m.text]
    assert len(alerts) == 1


async def test_the_rep_typing_the_same_text_as_a_bot_send_is_still_the_rep(config: Any, db_url: str) -> None:
    # a puppet that does not echo the bot's sends (padlocal): the rep's copy is not taken for an echo
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        sim.puppet.echo_self_messages = False
        await sim.friend_request("c1", "张三")
        await sim.advance(timedelta(minutes=1))
        [welcome] = sim.texts_to(sim.contact_id("c1"))
        await sim.rep_types(welcome, in_chat="c1")
        [row] = await sim.rows(OutgoingMessage, OutgoingMessage.conversation_id == sim.contact_id("c1"))
        assert row.echoed_at is None  # the bot's send has its platform id; the rep's message has another
        [written] = await sim.rows(Event, Event.kind == "rep_message")
        assert written.text == welcome


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    import random

    backoff = Backoff(initial=1.0, maximum=30.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [min(30.0, 2.0**n) for n in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert delays[-1] >= 15.0  # capped, but never below half the cap
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.next_delay() <= 1.0


async def test_a_friend_request_whose_accept_was_cut_off_is_accepted_after_reconnecting(
    sim: Harness,
) -> None:
    sim.puppet.fail_next_accept = ConnectionResetError("connection reset during the accept")
    await sim.friend_request("c1", "张三", "小红书看到的")
    assert sim.puppet.accepted == []
    assert not sim.bot.transports[sim.account_id].connected

    sim.puppet.go_online()
    await sim.advance(timedelta(minutes=1))

    assert len(sim.puppet.accepted) == 1
    [welcome] = sim.texts_to(sim.contact_id("c1"))
    assert "小红书" in welcome
    [customer] = await sim.rows(Customer)
    assert customer.source_channel == "小红书"


async def leave_a_countdown_send_in_doubt(first: Harness) -> None:
    """What a process killed in the middle of sending the 1-day step leaves behind: the row
    claimed and its send reserved, outcome never written."""
    async with first.bot.db.transaction() as session:
        [step] = (await session.exec(select(ScheduledMessage).where(ScheduledMessage.step == "1d"))).all()
        step.status = "claimed"
        session.add(
            OutgoingMessage(
                account_id=step.account_id,
                customer_id=step.customer_id,
                conversation_id=first.contact_id("c1"),
                kind="countdown",
                text="限时价 还剩1天",
                idempotency_key=step.idempotency_key,
                status="sending",
                created_at=MONDAY_10AM,
            )
        )


class CannotLogIn:
    """An account whose login fails (a token being fixed, an endpoint not up yet)."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.on_connection: ConnectionListener | None = None
        self.on_login: LoginListener | None = None

    @property
    def self_id(self) -> str:
        return ""

    @property
    def connected(self) -> bool:
        return False

    async def start(self, sink: EventSink) -> None:
        raise TransportError(f"account {self.account_id}: the puppet service is not reachable")

    async def stop(self) -> None:
        pass

    async def accept(self, request: FriendRequest) -> None:
        raise TransportError("offline")

    async def send_text(self, conversation_id: str, text: str) -> str | None:
        raise TransportError("offline")

    async def send_attachment(self, conversation_id: str, attachment: Attachment) -> str | None:
        raise TransportError("offline")

    async def recall(self, message_id: str) -> bool:
        return False

    async def find_room(self, topic: str) -> str | None:
        return None

    async def tag_contact(self, contact_id: str, tag: str, *, remove: bool = False) -> None:
        raise TransportError("offline")

    async def settle(self) -> None:
        pass


async def test_the_check_the_chat_alert_survives_a_restart_that_cannot_log_in(
    config: Any, db_url: str
) -> None:
    async with Harness(config, MONDAY_10AM, database_url=db_url) as first:
        await customer_with_countdown(first)
        await leave_a_countdown_send_in_doubt(first)
    later = MONDAY_10AM + timedelta(hours=10)
    bot = SalesBot(config, VirtualClock(later), transports={"demo": CannotLogIn("demo")}, database_url=db_url)
    try:
        with pytest.raises(TransportError):
            await bot.start()
    finally:
        await bot.stop()
    async with Harness(config, later + timedelta(minutes=1), database_url=db_url) as second:
        await second.advance(timedelta(seconds=1))
        console = [m.text for m in second.puppet.sent if m.conversation_id == "filehelper"]
        [alert] = [text for text in console if "可能没有发出" in text]
        assert "【张三" in alert and "倒计时" in alert, "planned when the doubt was found, sent once back"


async def test_a_send_left_in_doubt_by_a_killed_process_is_reported_to_the_rep(
    config: Any, db_url: str
) -> None:
    async with Harness(config, MONDAY_10AM, database_url=db_url) as first:
        await customer_with_countdown(first)
        await leave_a_countdown_send_in_doubt(first)
    async with Harness(config, MONDAY_10AM + timedelta(hours=10), database_url=db_url) as second:
        await second.advance(timedelta(seconds=1))
        step = (await second.rows(ScheduledMessage, ScheduledMessage.step == "1d"))[0]
        assert step.status == "failed" and "delivery unknown" in step.last_error
        console = [m.text for m in second.puppet.sent if m.conversation_id == "filehelper"]
        [alert] = [text for text in console if "可能没有发出" in text]
        assert "【张三" in alert and "倒计时" in alert
        assert not any("限时价" in m.text for m in second.puppet.sent if m.conversation_id != "filehelper")
