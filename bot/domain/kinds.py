"""The one vocabulary of outgoing messages: kinds and statuses.

Values are the strings stored in the database, so a ``Kind`` compares equal to the column value.
Reps never see the English value (``followup``, ``pacing``): wording goes through
:mod:`bot.domain.display` (``kind_name``, ``status_name``).
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """What an outgoing message is (``scheduled_messages.kind`` and ``outgoing_messages.kind``)."""

    WELCOME = "welcome"
    COUNTDOWN = "countdown"
    AFTERCARE = "aftercare"
    FOLLOWUP = "followup"
    REPLY = "reply"  # a script the rep chose with /send
    DIGEST = "digest"
    OWED = "owed"  # a nudge to the rep: a customer's message waits for an answer
    ALERT = "alert"  # something the rep must know now
    SUGGESTION = "suggestion"  # scripts suggested to the rep for a customer's objection
    COMMAND_REPLY = "command_reply"  # the answer to a rep's command
    SIGNAL = "signal"  # a customer signal the rep should act on now (a hot lead) or its nudge
    AUTO_REPLY = "auto_reply"  # the bot keeping a template's promise ("回复“礼物”即可领取")
    COACH = "coach"  # the next best step for a customer, with playbook scripts to /send
    REACTIVATION = "reactivation"  # scripts offered to the rep when a customer turns dormant
    BROADCAST = "broadcast"  # one customer's message of a segment send (/broadcast, /confirm)


class Status(StrEnum):
    """Where a planned message stands (``scheduled_messages.status``)."""

    PENDING = "pending"
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    PAUSED = "paused"


# sent on the rep's behalf without a fresh human decision: quiet hours, caps and pacing apply
AUTOMATED_KINDS: tuple[Kind, ...] = (Kind.COUNTDOWN, Kind.AFTERCARE, Kind.FOLLOWUP, Kind.BROADCAST)
# what a soft opt-out ("别老催我") holds back; aftercare is service, not a push
PUSH_KINDS: tuple[Kind, ...] = (Kind.COUNTDOWN, Kind.FOLLOWUP, Kind.BROADCAST)
# what counts as contact with a customer (owed replies, silence): the welcome answering their
# friend request and the scripts a rep chose; automated pushes (countdowns, follow-ups, aftercare)
# answer nobody. The rep typing in the chat counts too (a rep_message event).
CONTACT_KINDS: tuple[Kind, ...] = (Kind.WELCOME, Kind.REPLY)
# messages to the rep's console about customers (their failure is logged, never reported to the console)
CONSOLE_KINDS: tuple[Kind, ...] = (
    Kind.ALERT,
    Kind.SUGGESTION,
    Kind.OWED,
    Kind.SIGNAL,
    Kind.COACH,
    Kind.REACTIVATION,
)
# planned and still waiting to go out (a paused one may go out after /resume)
OPEN_STATUSES: tuple[Status, ...] = (Status.PENDING, Status.PAUSED)
