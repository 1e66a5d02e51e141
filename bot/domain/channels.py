"""Where a customer came from, read off the friend request's hello text."""

from __future__ import annotations

from collections.abc import Sequence

from bot.config import ChannelRule


def match_channel(hello: str, rules: Sequence[ChannelRule]) -> ChannelRule | None:
    """The first rule with a keyword in the hello text (case-insensitive), or None."""
    text = hello.casefold()
    for rule in rules:
        if any(keyword.casefold() in text for keyword in rule.keywords):
            return rule
    return None
