"""A dispatcher process for the crash test (tests/test_crash.py): it sends every due ``bulk`` row
through the real Database, Messenger and Dispatcher. Its transport "delivers" by appending the
message to a file and fsyncing it: the file is the ground truth of what reached the platform.

    python -m tests.crash_worker DATABASE_URL SINK_FILE
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import SystemClock
from bot.hooks import CustomerUnreachable, Hooks
from bot.media import Attachment
from bot.services.messenger import Messenger
from bot.services.outbox import Composed, Dispatcher
from bot.transport.base import ConnectionListener, EventSink, FriendRequest, LoginListener
from storage.db import Database
from storage.models import Customer, ScheduledMessage

ACCOUNT = "crash"


class FileSink:
    """A :class:`bot.transport.base.Transport` that appends each sent text to a file, durably."""

    account_id = ACCOUNT
    self_id = "crash-self"
    connected = True
    on_connection: ConnectionListener | None = None
    on_login: LoginListener | None = None

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def send_text(self, conversation_id: str, text: str) -> str | None:
        os.write(self.fd, f"{text}\n".encode())
        os.fsync(self.fd)
        return uuid.uuid4().hex

    async def send_attachment(self, conversation_id: str, attachment: Attachment) -> str | None:
        return await self.send_text(conversation_id, attachment.describe())

    async def start(self, sink: EventSink) -> None: ...

    async def stop(self) -> None: ...

    async def accept(self, request: FriendRequest) -> None: ...

    async def recall(self, message_id: str) -> bool:
        return False

    async def settle(self) -> None: ...

    async def find_room(self, topic: str) -> str | None:
        return None

    async def tag_contact(self, contact_id: str, tag: str, *, remove: bool = False) -> None: ...


class KeyComposer:
    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        assert customer is not None, "customer rows always carry their customer"
        return Composed(customer.wechat_id, row.idempotency_key)


async def main(url: str, sink_path: str) -> None:
    db = Database(url)
    clock = SystemClock()
    messenger = Messenger(db, clock, {ACCOUNT: FileSink(sink_path)})

    async def unreachable(event: CustomerUnreachable) -> None:
        raise AssertionError("the sink never refuses")

    hooks = Hooks()
    hooks.on(CustomerUnreachable, unreachable)
    dispatcher = Dispatcher(db, clock, messenger, {"bulk": KeyComposer()}, hooks=hooks)
    await dispatcher.recover()
    sent = await dispatcher.run_due()
    await db.close()
    print(f"done {sent}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
