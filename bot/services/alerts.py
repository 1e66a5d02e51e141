"""Alerts: things the rep must know now, sent to their console as ``alert``."""

from __future__ import annotations

from collections.abc import Callable

from bot.services.messenger import Messenger

ALERT = "alert"


class Alerts:
    def __init__(
        self,
        messenger: Messenger,
        console_of: Callable[[str], str],
        note_customer: Callable[[str, int], None],
    ) -> None:
        self.messenger = messenger
        self.console_of = console_of
        self.note_customer = note_customer

    async def send(self, account_id: str, text: str, key: str, customer_id: int | None = None) -> None:
        """``key`` makes the alert idempotent: the same situation is reported once."""
        if customer_id is not None:
            self.note_customer(account_id, customer_id)
        await self.messenger.send(
            account_id=account_id,
            conversation_id=self.console_of(account_id),
            text=text,
            kind=ALERT,
            key=f"{account_id}:{ALERT}:{key}",
            customer_id=customer_id,
        )
