"""The accounts the configuration names, as rows other tables refer to."""

from __future__ import annotations

from bot.clock import Clock
from bot.config import Config
from storage.db import Database
from storage.repositories import Accounts


class AccountService:
    def __init__(self, db: Database, clock: Clock, config: Config) -> None:
        self.db = db
        self.clock = clock
        self.config = config

    async def sync(self) -> None:
        """Create or update a row per configured account (nickname, role, profile) at startup."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            accounts = Accounts(session)
            for account in self.config.accounts:
                await accounts.upsert(
                    account.id,
                    account.profile.nickname,
                    account.profile.role,
                    account.profile.model_dump(mode="json"),
                    now,
                )

    async def logged_in(self, account_id: str, self_contact_id: str) -> None:
        """Remember the account's own contact id (its self chat, its echoes)."""
        async with self.db.transaction() as session:
            await Accounts(session).set_self_contact(account_id, self_contact_id)
