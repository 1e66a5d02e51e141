"""A bare python-wechaty bot: the transport work salesbot does per event, and nothing else.

    python bench/bare_bot.py --endpoint 127.0.0.1:8788 --token insecure_<uuid> --objections FILE
        [--console filehelper] [--trimmed]

The yardstick of bench/hot_path.py (issue 20): it accepts every friend request and sends a welcome
text, and sends the console one message for each customer text the corpus labels as an objection
(``--objections``: the load's labelled texts, written by bench/hot_path.py; a set lookup). No
services, no database, no model. Wechaty comes through bot/transport/wechaty_compat
only because python-wechaty 0.10.7 does not import on Python 3.11 without its shims. Those shims
also leave out PyGithub and Quart, which python-wechaty imports and salesbot never uses (about
24 MB); the bare bot loads them first, so it is python-wechaty as a user gets it. ``--trimmed``
measures it trimmed as salesbot is (``bench/hot_path.py --bare-trimmed``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

if __name__ == "__main__" and "--trimmed" not in sys.argv:
    # before the shims: they leave these out only when they are not loaded
    import github  # noqa: F401
    import quart  # noqa: F401
    import quart_cors  # noqa: F401

from wechaty_puppet import FriendshipType

from bot.transport.wechaty_compat import (
    IsolatedWechaty,
    new_service_puppet,
    new_wechaty_options,
)

WELCOME = (
    "{name}您好！我是小林，星辰汽车的资深购车顾问，可以帮您做一对一选车咨询、试驾预约和金融方案测算。"
    "送您一份《2026购车避坑指南》电子版。您现在是在看哪个价位的车呢？"
)


class BareBot(IsolatedWechaty):
    def __init__(self, options: Any, console: str, objections: frozenset[str]) -> None:
        super().__init__(options)
        self.console_id = console
        self.objections = objections

    async def on_friendship(self, friendship: Any) -> None:
        if friendship.type() != FriendshipType.FRIENDSHIP_TYPE_RECEIVE:
            return  # the Confirm some puppets report after an accept
        await friendship.accept()
        contact = friendship.contact()
        await contact.say(WELCOME.format(name=contact.name))

    async def on_message(self, msg: Any) -> None:
        if msg.is_self() or msg.room() is not None:
            return  # our own sends come back as echoes
        text = msg.text()
        if text in self.objections:
            talker = msg.talker()
            await self.Contact.load(self.console_id).say(
                f"客户 {talker.name} 说：{text}\n可能有顾虑，请跟进。"
            )


def parsed() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--endpoint", required=True, help="host:port of the puppet service")
    parser.add_argument("--token", required=True, help="the puppet service token")
    parser.add_argument("--console", default="filehelper", help="contact id the objection messages go to")
    parser.add_argument(
        "--objections", required=True, help="a JSON list of the texts that are objections (labelled)"
    )
    parser.add_argument(
        "--trimmed", action="store_true", help="leave PyGithub and Quart out, as salesbot does (see above)"
    )
    return parser.parse_args()


async def main(args: argparse.Namespace, objections: frozenset[str]) -> None:
    puppet = new_service_puppet(token=args.token, endpoint=args.endpoint, keepalive_seconds=30.0)
    options = new_wechaty_options(name="bare", puppet=puppet, token=args.token, endpoint=args.endpoint)
    bot = BareBot(options, args.console, objections)
    running = asyncio.ensure_future(bot.start())  # lives as long as the service's event stream
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, running.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await running


if __name__ == "__main__":
    arguments = parsed()
    labelled = frozenset(json.loads(Path(arguments.objections).read_text(encoding="utf-8")))
    asyncio.run(main(arguments, labelled))
