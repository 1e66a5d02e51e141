"""Promises kept: a template that says 回复“礼物”即可领取 (or 回复“1”我马上安排) is answered when the
customer replies with that keyword.

Each hook (``[[hooks.rules]]``) names its keywords, the kind of message that makes the promise and
the template sent back. It applies only when the latest message of that kind the customer received
still carries the promise in its sent text (回复“<keyword>”), and only within ``hooks.window_hours``
of it: reading the text that actually went out stays right whatever the template's wording or
branch (a countdown step without the call to action promises nothing). The answer is an
``auto_reply`` outbox row keyed by customer, hook and the promising message's id, planned in the
inbound event's transaction: one answer per promise. It answers the customer's own message, so
quiet hours do not hold it back (it is not a push).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config, HookRule
from bot.domain.kinds import Kind
from bot.objections.library import normalize
from bot.services.outbox import Composed
from bot.services.planning import message_key, outbox_row
from bot.services.welcome import reply_variables
from bot.templates import TemplateLibrary
from bot.transport.base import TextMessage
from storage.models import Customer, ScheduledMessage
from storage.queries import promises as queries
from storage.repositories import Events, Outbox

AUTO_REPLY = Kind.AUTO_REPLY
# an answer that could not go out at once (the account offline) is pointless after this
REPLY_VALID = timedelta(hours=1)
# a keyword of two or more characters may come with a few more ("我要礼物"); a short one must be all
EXTRA_CHARACTERS = 4


@dataclass(frozen=True)
class Kept:
    rule: HookRule
    keyword: str
    reply_id: int | None  # the auto reply to send once committed (None: this promise was kept already)


def replied_with(text: str, keywords: list[str]) -> str | None:
    """The keyword the customer's message answers with, ignoring punctuation, spaces and width."""
    said = normalize(text)
    for keyword in keywords:
        wanted = normalize(keyword)
        if not wanted:
            continue
        if said == wanted or (
            len(wanted) >= 2 and wanted in said and len(said) <= len(wanted) + EXTRA_CHARACTERS
        ):
            return keyword
    return None


def promises(text: str, keyword: str) -> bool:
    """Whether a sent message asks for ``keyword`` as a reply: 回复“1”, 回复"礼物", 回复「礼物」, 回复1."""
    word = re.escape(keyword)
    pattern = rf"回复\s*(?:[“\"「『']\s*{word}\s*[”\"」』']|{word}(?![0-9A-Za-z]))"
    return re.search(pattern, text) is not None


class Promises:
    def __init__(self, clock: Clock, config: Config) -> None:
        self.clock = clock
        self.config = config

    async def answer(self, session: AsyncSession, customer: Customer, message: TextMessage) -> Kept | None:
        """Part of the inbound event's transaction: plan the hook's answer when the message takes
        up a promise still open. None: no promise taken up."""
        assert customer.id is not None
        if customer.paused_at is not None:  # opted out of automation: the rep answers
            return None
        now = self.clock.now()
        window = timedelta(hours=self.config.hooks.window_hours)
        for rule in self.config.hooks.rules:
            keyword = replied_with(message.text, rule.keywords)
            if keyword is None:
                continue
            promise = await queries.latest_sent(session, customer.id, rule.after)
            if (
                promise is None
                or promise.sent_at is None
                or now - promise.sent_at > window
                or not promises(promise.text, keyword)
            ):
                continue
            key = message_key(customer.account_id, AUTO_REPLY, rule.key, promise.id, customer_id=customer.id)
            reply_id = await Outbox(session).plan_returning_id(
                outbox_row(
                    account_id=customer.account_id,
                    customer_id=customer.id,
                    kind=AUTO_REPLY,
                    key=key,
                    sequence=f"{AUTO_REPLY}:{rule.key}",
                    step=str(promise.id),
                    template=rule.template,
                    due=now,
                    not_after=now + REPLY_VALID,
                    now=now,
                    context={"hook": rule.key, "keyword": keyword, "promise": promise.id},
                )
            )
            if reply_id is not None:
                await Events(session).record(
                    customer.account_id,
                    "hook_triggered",
                    now,
                    customer_id=customer.id,
                    text=message.text,
                    data={"hook": rule.key, "keyword": keyword, "promise": promise.id},
                )
            return Kept(rule, keyword, reply_id)
        return None


class AutoReplyComposer:
    """Renders a hook's answer when it goes out: off-hours wording depends on the send time."""

    def __init__(self, config: Config, templates: TemplateLibrary, clock: Clock) -> None:
        self.config = config
        self.templates = templates
        self.clock = clock

    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        assert customer is not None, "customer rows always carry their customer"
        context: dict[str, Any] = {
            **reply_variables(self.config, row.account_id, customer, self.clock.now()),
            "keyword": str(row.context.get("keyword", "")),
        }
        # the row's number rotates a set of attachments (proof images across a countdown's steps)
        rendered = self.templates.render_message(row.template, context, rotation=row.id or 0)
        return Composed(customer.wechat_id, rendered.text, attachment=rendered.attachment)
