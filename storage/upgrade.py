"""``python -m storage.upgrade``: bring a database's schema to the newest revision in a process of
its own, so the long-running bot that asked never imports alembic (about 10 MB it would keep for
nothing once the schema is current; issue 20). The URL comes on standard input, never on the command
line (another user's ``ps`` shows arguments). A failure is one line on standard error after
:data:`storage.errors.UPGRADE_FAILED`, for people, without the password: what
:meth:`Database.migrate` would have raised."""

from __future__ import annotations

import asyncio
import sys

from storage.db import Database, _reason
from storage.errors import UPGRADE_FAILED, DatabaseUnavailable


async def _upgrade(url: str) -> None:
    db = Database(url)
    try:
        await db.migrate()
    finally:
        await db.close()


def main() -> int:
    url = sys.stdin.buffer.read().decode("utf-8")  # as sent, whatever the locale's encoding
    try:
        asyncio.run(_upgrade(url))
    except DatabaseUnavailable as exc:
        print(UPGRADE_FAILED + str(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # alembic's or the driver's: its own words, no traceback
        reason = f"could not bring the database's schema up to date ({_reason(exc)})"
        print(UPGRADE_FAILED + reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
