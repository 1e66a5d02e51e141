"""Keeps ``customer.lifecycle`` true: the state the pure rule gives, set and logged in the caller's
transaction. Used by the daily sweep, a customer's message, /stage and /order (so the digest and
/info read the state from the row, cheaply).

A move into "dormant" is left to the sweep unless the caller plans the reactivation card itself
(``dormant=True``): that way no customer turns dormant without their card.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import Config
from bot.domain.lifecycle import (
    Activity,
    Lifecycle,
    LifecycleRules,
    lifecycle_state,
    silence_began,
    silent_days,
)
from bot.domain.stages import Pipeline
from storage.models import Customer
from storage.repositories import Events


def rules_of(config: Config) -> LifecycleRules:
    cfg = config.lifecycle
    return LifecycleRules(
        new_days=cfg.new_days,
        dormant_days_before_order=cfg.dormant_days_before_order,
        dormant_days_after_order=cfg.dormant_days_after_order,
        lost_days=cfg.lost_days,
    )


class LifecycleStates:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.rules = rules_of(config)
        self.pipeline = Pipeline(config.stages)

    def activity(self, customer: Customer) -> Activity:
        return Activity(
            added_at=customer.added_at,
            last_inbound_at=customer.last_inbound_at,
            ordered=not self.pipeline.is_before(customer.stage, self.config.pipeline.order_stage),
            deleted=customer.deleted_at is not None,
        )

    def state_of(self, customer: Customer, now: datetime) -> Lifecycle:
        return lifecycle_state(now, self.activity(customer), self.rules, self.config.tz)

    async def update(
        self, session: AsyncSession, customer: Customer, now: datetime, *, reason: str, dormant: bool = False
    ) -> Lifecycle | None:
        """Set the customer's state as of ``now``; returns the new state when it changed (a
        ``lifecycle_changed`` event), else None."""
        assert customer.id is not None
        state = self.state_of(customer, now)
        old = customer.lifecycle
        if state == old or (state is Lifecycle.DORMANT and not dormant):
            return None
        activity = self.activity(customer)
        customer.lifecycle = str(state)
        await Events(session).record(
            customer.account_id,
            "lifecycle_changed",
            now,
            customer_id=customer.id,
            data={
                "from": old,
                "to": str(state),
                "silent_since": silence_began(activity, self.config.tz).isoformat(),
                "silent_days": silent_days(now, activity, self.config.tz),
                "reason": reason,
            },
        )
        return state
