"""A console that refuses messages: the failure is logged, never reported to that same console.

Console alerts and suggestions are outbox rows; a failed row raises an "undeliverable" alert,
which is itself a console row. Without a stop, a console that keeps refusing sends would report
each failure with a new alert about the last one, without end.
"""

from __future__ import annotations

import logging

import pytest

from storage.models import Customer, ScheduledMessage
from tests.harness import Harness


async def test_a_failed_console_alert_is_logged_not_reported_again(
    sim: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await sim.customer_in_chat("c1", "张三")
    sim.puppet.refuse_sends_to.add(sim.bot.directory.console_of(sim.account_id))
    with caplog.at_level(logging.WARNING):
        await sim.customer_says("c1", "以后不要再给我发消息了")
    [customer] = await sim.rows(Customer)
    assert customer.paused_at is not None, "the opt-out is applied whatever the console does"
    alerts = await sim.rows(ScheduledMessage, ScheduledMessage.kind == "alert")
    assert [(a.status, ":opt_out:" in a.idempotency_key) for a in alerts] == [("failed", True)]
    assert any("not delivered" in r.getMessage() for r in caplog.records), "the failure is in the log"
