"""The scenario harness the tests drive: :class:`bot.simulate.Simulation` plus the reads that
several test modules need (rows in the database, what the bot sent, the rep's replies), kept here
once instead of copied into every module."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Self, TypeVar

from sqlmodel import SQLModel, select

from bot.simulate import Simulation
from storage.models import Customer

M = TypeVar("M", bound=SQLModel)


class Harness(Simulation):
    """A :class:`Simulation` with the tests' questions about it."""

    stopped = False

    async def __aenter__(self) -> Self:  # typed: ``async with Harness(...) as sim`` is a Harness
        await super().__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await super().__aexit__(*exc)
        self.stopped = True

    # -- the database -------------------------------------------------------------------------------

    async def rows(self, model: type[M], *where: Any) -> list[M]:
        """Every ``model`` row matching all of ``where`` (SQLAlchemy column expressions)."""
        async with self.bot.db.transaction() as session:
            found = list((await session.exec(select(model).where(*where))).all())
        if self.stopped:  # a look after the run reopened the closed engine: close it again
            await self.bot.db.close()
        return found

    async def customer(self, handle: str) -> Customer:
        """The one customer row of the scenario handle ``handle``."""
        [found] = await self.rows(Customer, Customer.wechat_id == self.contact_id(handle))
        return found

    # -- what the bot sent --------------------------------------------------------------------------

    def sent(self, kind: str, to: str | None = None) -> list[dict[str, Any]]:
        """Messages of ``kind`` the bot sent (to ``to``: a handle, ``console`` or ``supervisor:<name>``)."""
        return [m for m in self.output if m["kind"] == kind and (to is None or m["to"] == to)]

    def replies(self) -> list[str]:
        """The text of every command reply so far, oldest first."""
        return [m["text"] for m in self.sent("command_reply")]

    def last_reply(self) -> str:
        return self.replies()[-1]

    def texts_to(self, contact_id: str) -> list[str]:
        """Everything the puppet delivered to the conversation ``contact_id`` (any kind)."""
        return [m.text for m in self.puppet.sent if m.conversation_id == contact_id]

    # -- steps --------------------------------------------------------------------------------------

    async def rep(self, text: str, in_chat: str | None = None) -> str:
        """The rep types ``text``; returns the one command reply it gets."""
        before = len(self.replies())
        await self.rep_types(text, in_chat)
        new = self.replies()[before:]
        assert len(new) == 1, f"expected exactly one reply to {text!r}, got {new}"
        return new[0]

    async def new_customer(self, handle: str = "c1", name: str = "张三") -> None:
        """A friend request from ``handle``, accepted and welcomed."""
        await self.friend_request(handle, name)
        await self.advance(timedelta(minutes=1))

    async def with_customers(self, *people: tuple[str, str]) -> None:
        """Friend requests from every (handle, name), then the welcomes."""
        for handle, name in people:
            await self.friend_request(handle, name)
        await self.advance(timedelta(minutes=1))

    async def customer_in_chat(self, handle: str = "c1", name: str = "张三") -> None:
        """A new customer who has also written once (replied: no follow-ups for this one)."""
        await self.new_customer(handle, name)
        await self.customer_says(handle, "你好")
