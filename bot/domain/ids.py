"""Numbers reps type as ids (#12, /cancel 7, /send 2): only what an INTEGER column can hold.

A 20-digit number reaches the database as an overflow (SQLite, asyncpg) and ``"²".isdigit()`` is
true while ``int("²")`` fails: both used to crash a command instead of answering its usage line.
"""

from __future__ import annotations

import re

MAX_ID = 2**31 - 1  # PostgreSQL INTEGER; SQLite's is wider
_DIGITS = re.compile(r"[0-9]{1,10}")


def parse_id(text: str) -> int | None:
    """``text`` as a stored id (ASCII digits, 0..MAX_ID), or None."""
    if not _DIGITS.fullmatch(text):
        return None
    number = int(text)
    return number if number <= MAX_ID else None


def fits_id(number: int) -> bool:
    """Whether a parsed number may be looked up (or used as a count) without overflowing."""
    return -MAX_ID <= number <= MAX_ID
