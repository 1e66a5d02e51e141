"""A customer's name and remark are re-read from the puppet now and then, not on every message
(issue 20: the round trip per message cost the hot path as much as reading the message)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlmodel import col

from bot.transport import wechaty_adapter
from bot.transport.wechaty_adapter import CONTACT_REFRESH_SECONDS, WechatyTransport
from storage.models import Customer, Event
from tests.harness import Harness


async def test_a_new_name_shows_within_the_refresh_and_messages_between_read_nothing(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sim.new_customer("c1", "张三")
    reads: Counter[str] = Counter()
    payload = sim.puppet.contact_payload

    async def counted(contact_id: str) -> object:
        reads[contact_id] += 1
        return await payload(contact_id)

    monkeypatch.setattr(sim.puppet, "contact_payload", counted)
    for text in ("你好", "在吗", "多少钱"):
        await sim.customer_says("c1", text)
    assert reads["wx_c1"] == 1  # the first message re-reads the contact, the next two do not

    sim.puppet.add_contact("wx_c1", "张三丰", friend=True)  # the customer renames themself
    await sim.customer_says("c1", "还有优惠吗")
    [customer] = await sim.rows(Customer)
    assert customer.display_name == "张三"  # read a moment ago: still current enough

    await sim.advance(timedelta(seconds=CONTACT_REFRESH_SECONDS))
    await sim.customer_says("c1", "那我考虑下")
    [customer] = await sim.rows(Customer)
    assert customer.display_name == "张三丰"
    assert reads["wx_c1"] == 2


async def test_the_first_message_reads_the_contact_past_the_services_cache(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-read marks the payload dirty first (the puppet service answers a plain forced read
    from its own cache), then reads it; the next messages read nothing."""
    sim.puppet.add_contact("wx_c9", "老客户", friend=True)
    calls: list[str] = []
    payload, dirty = sim.puppet.contact_payload, sim.puppet.contact_payload_dirty

    async def read(contact_id: str) -> object:
        calls.append(f"read {contact_id}")
        return await payload(contact_id)

    async def marked(contact_id: str) -> None:
        calls.append(f"dirty {contact_id}")
        await dirty(contact_id)

    monkeypatch.setattr(sim.puppet, "contact_payload", read)
    monkeypatch.setattr(sim.puppet, "contact_payload_dirty", marked)
    await sim.customer_says("c9", "你好")
    mine = [c for c in calls if c.endswith("wx_c9")]
    assert mine[-2:] == ["dirty wx_c9", "read wx_c9"]  # (Wechaty may read it first, from its cache)
    await sim.customer_says("c9", "在吗")
    assert [c for c in calls if c.endswith("wx_c9")] == mine


async def test_a_refresh_that_fails_loses_no_message_and_is_not_tried_on_every_message(
    sim: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The puppet service refuses the re-read (an error, or no answer): the message is handled
    with the name known before, a warning says so, and the next message does not try again."""
    sim.puppet.add_contact("wx_c9", "老客户", friend=True)
    tries: list[str] = []

    async def refused(contact_id: str) -> None:
        tries.append(contact_id)
        raise RuntimeError("DirtyPayload: not implemented by this puppet service")

    monkeypatch.setattr(sim.puppet, "contact_payload_dirty", refused)
    for text in ("你好", "多少钱"):
        await sim.customer_says("c9", text)
    assert tries == ["wx_c9"]
    texts = [e.text for e in await sim.rows(Event, col(Event.kind) == "message_in")]
    assert texts == ["你好", "多少钱"]
    assert "re-reading contact wx_c9 failed (DirtyPayload: not implemented" in caplog.text
    [customer] = await sim.rows(Customer)
    assert customer.display_name == "老客户"


async def test_accepting_a_friend_request_reads_its_payload_once(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The friendship event read the request; accepting it uses that read instead of a second
    round trip to the puppet (issue 20)."""
    reads: list[str] = []
    payload = sim.puppet.friendship_payload

    async def counted(friendship_id: str, payload_: object = None) -> object:
        reads.append(friendship_id)
        return await payload(friendship_id, payload_)

    monkeypatch.setattr(sim.puppet, "friendship_payload", counted)
    await sim.new_customer("c1", "张三")
    [customer] = await sim.rows(Customer)
    assert customer.display_name == "张三"
    assert len(reads) == 1, reads


async def test_reads_older_than_the_refresh_are_forgotten(sim: Harness) -> None:
    """When each contact was last re-read is kept while it matters (CONTACT_REFRESH_SECONDS), not
    for every contact the account ever heard from."""
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    for handle in ("c1", "c2"):
        await sim.customer_says(handle, "你好")
    transport = sim.bot.transports[sim.account_id]
    assert isinstance(transport, WechatyTransport)
    reads = transport._contact_read
    assert set(reads) == {"wx_c1", "wx_c2"}
    await sim.advance(timedelta(seconds=CONTACT_REFRESH_SECONDS))
    await sim.with_customers(("c3", "王五"))
    await sim.customer_says("c3", "在吗")
    assert set(reads) == {"wx_c3"}


def dirtied(sim: Harness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The contacts re-read past the caches from now on (each re-read marks its payload dirty)."""
    seen: list[str] = []
    dirty = sim.puppet.contact_payload_dirty

    async def counted(contact_id: str) -> None:
        seen.append(contact_id)
        await dirty(contact_id)

    monkeypatch.setattr(sim.puppet, "contact_payload_dirty", counted)
    return seen


async def test_an_accept_is_trusted_for_the_friend_flag_once_the_puppet_shows_it_fills_it(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first accept re-reads the contact (two gRPC calls on the puppet service): its flag now
    says friend, so this puppet fills it. Later accepts are noted instead, and a send to such a
    contact counts them as a friend until their payload is read again (a failed send is then
    checked against the flag; tests/test_gateway_e2e.py sends one)."""
    reads = dirtied(sim, monkeypatch)
    await sim.new_customer("c1", "张三")
    assert reads == ["wx_c1"]
    transport = sim.bot.transports[sim.account_id]
    assert isinstance(transport, WechatyTransport)
    await sim.new_customer("c2", "李四")
    assert reads == ["wx_c1"], "no re-read after the second accept"
    assert list(transport._accepted) == ["wx_c2"]
    await sim.advance(timedelta(minutes=5))  # the welcome went out
    assert sim.sent("welcome", "c2")
    await sim.customer_says("c2", "你好")  # the first message re-reads them: nothing to remember
    assert reads == ["wx_c1", "wx_c2"]
    assert list(transport._accepted) == []


async def test_a_puppet_that_fills_the_flag_late_for_new_friends_is_asked_after_every_accept(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trust comes only from a re-read right after an accept: a puppet that reports long-standing
    friends as friends but a new one as a stranger for a while (or leaves the flag at protobuf's
    default) earns none, so a failed send to a new customer never churns them on the flag."""
    reads = dirtied(sim, monkeypatch)
    payload = sim.puppet.contact_payload
    established = {"wx_c0"}

    async def late(contact_id: str) -> object:
        read = await payload(contact_id)
        read.friend = contact_id in established
        return read

    monkeypatch.setattr(sim.puppet, "contact_payload", late)
    await sim.customer_says("c0", "你好", name="老客户")  # a fresh read of a friend: teaches nothing
    assert reads == ["wx_c0"]
    await sim.new_customer("c1", "张三")
    await sim.new_customer("c2", "李四")
    assert reads == ["wx_c0", "wx_c1", "wx_c2"]
    transport = sim.bot.transports[sim.account_id]
    assert isinstance(transport, WechatyTransport)
    assert list(transport._accepted) == []


async def test_trust_is_checked_again_and_ends_when_a_re_read_shows_a_stranger(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wechaty_adapter, "_TRUSTED_ACCEPTS", 2)
    reads = dirtied(sim, monkeypatch)
    payload = sim.puppet.contact_payload
    late = {"wx_c4"}

    async def flag(contact_id: str) -> object:
        read = await payload(contact_id)
        if contact_id in late:
            read.friend = False
        return read

    monkeypatch.setattr(sim.puppet, "contact_payload", flag)
    for n in range(1, 7):
        await sim.friend_request(f"c{n}", f"客户{n}")
    # c1 read (trust for two), c2 and c3 trusted, c4 read: a stranger ends the trust (and what
    # it noted: c2 and c3 are no longer counted as friends), c5 read (trust again), c6 trusted
    assert reads == ["wx_c1", "wx_c4", "wx_c5"]
    transport = sim.bot.transports[sim.account_id]
    assert isinstance(transport, WechatyTransport)
    assert list(transport._accepted) == ["wx_c6"]
