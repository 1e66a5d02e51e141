"""A bare python-wechaty bot: the transport work salesbot does per event, and nothing else.

    python bench/bare_bot.py --endpoint 127.0.0.1:8788 --token insecure_<uuid> [--console filehelper]
        [--without-github]

The yardstick of bench/hot_path.py (issue 20): it accepts every friend request and sends a welcome
text, and sends the console one message for each customer text that looks like an objection (a
keyword test). No services, no database, no model. Wechaty comes through bot/transport/wechaty_compat
only because python-wechaty 0.10.7 does not import on Python 3.11 without its shims. Those shims
also leave out PyGithub, which python-wechaty imports and salesbot never uses (about 14 MB); the
bare bot loads it first, so it is python-wechaty as a user gets it. ``--without-github`` measures
it trimmed as salesbot is (``bench/hot_path.py --bare-without-github``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

if __name__ == "__main__" and "--without-github" not in sys.argv:
    import github  # noqa: F401  (before the shims: they leave it out only when it is not loaded)

from wechaty_puppet import FriendshipType

from bot.transport.wechaty_compat import (
    IsolatedWechaty,
    new_service_puppet,
    new_wechaty_options,
)

# a trivial objection test: words of price, budget, stalling, comparison, trust, quality, after-sales,
# fit, and doubtful questions
OBJECTION_WORDS = (
    *("贵", "便宜", "价", "钱", "预算", "优惠", "划算", "值", "折", "少", "送"),
    *("考虑", "想想", "看看", "再说", "商量", "比较", "对比", "别家"),
    *("靠谱", "担心", "不放心", "怕", "质量", "售后", "保修", "维修", "退", "合适", "适合"),
    *("吗", "咋", "怎么"),
)

WELCOME = (
    "{name}您好！我是小林，星辰汽车的资深购车顾问，可以帮您做一对一选车咨询、试驾预约和金融方案测算。"
    "送您一份《2026购车避坑指南》电子版。您现在是在看哪个价位的车呢？"
)


def looks_like_objection(text: str) -> bool:
    return any(word in text for word in OBJECTION_WORDS)


class BareBot(IsolatedWechaty):
    def __init__(self, options: Any, console: str) -> None:
        super().__init__(options)
        self.console_id = console

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
        if looks_like_objection(text):
            talker = msg.talker()
            await self.Contact.load(self.console_id).say(
                f"客户 {talker.name} 说：{text}\n可能有顾虑，请跟进。"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--endpoint", required=True, help="host:port of the puppet service")
    parser.add_argument("--token", required=True, help="the puppet service token")
    parser.add_argument("--console", default="filehelper", help="contact id the objection messages go to")
    parser.add_argument(
        "--without-github", action="store_true", help="leave PyGithub out, as salesbot does (see above)"
    )
    args = parser.parse_args()
    puppet = new_service_puppet(token=args.token, endpoint=args.endpoint, keepalive_seconds=30.0)
    options = new_wechaty_options(name="bare", puppet=puppet, token=args.token, endpoint=args.endpoint)
    bot = BareBot(options, args.console)
    running = asyncio.ensure_future(bot.start())  # lives as long as the service's event stream
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, running.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await running


if __name__ == "__main__":
    asyncio.run(main())
