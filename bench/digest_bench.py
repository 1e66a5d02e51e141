"""Digest aggregation at team scale: 200 reps, 1,000,000 logged events over 30 days, in SQLite.

    python bench/digest_bench.py [--reps 200] [--events 1000000]

Measures rendering one supervisor's team digest (200 reps, today so far and the day before).
Target (issue 6): well under a second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import tempfile
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.clock import VirtualClock
from bot.config import parse_config
from bot.objections.library import LABELS, ObjectionLibrary
from bot.services.digest import DigestService
from bot.templates import TemplateLibrary
from storage.db import Database

ROOT = Path(__file__).resolve().parent.parent
KINDS = [
    "message_in",
    "message_out",
    "friend_request",
    "objection",
    "stage_changed",
    "tag_added",
    "order",
    "customer_deleted",
    "command",
    "welcome_planned",
]


def config_for(reps: int):  # type: ignore[no-untyped-def]
    data = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))
    template = data["accounts"][0]
    data["accounts"] = [{**template, "id": f"rep{i:03d}"} for i in range(reps)]
    data["supervisors"] = [
        {**data["supervisors"][0], "account": "rep000", "accounts": [f"rep{i:03d}" for i in range(reps)]}
    ]
    return parse_config(data, "bench", ROOT)


def fill(path: Path, reps: int, events: int, end: datetime) -> None:
    rng = random.Random(7)
    con = sqlite3.connect(path)
    now = end.replace(tzinfo=None)
    con.executemany(
        "INSERT INTO account VALUES (?, 'n', 'r', '{}', NULL, ?, ?)",
        [(f"rep{i:03d}", now, now) for i in range(reps)],
    )
    customers = reps * 100
    con.executemany(
        "INSERT INTO customer (id, account_id, wechat_id, display_name, remark, source_channel, stage, "
        "added_at, last_inbound_at, last_outbound_at) VALUES (?, ?, ?, ?, '', '', ?, ?, ?, ?)",
        [
            (
                c,
                f"rep{c % reps:03d}",
                f"wx{c}",
                f"客户{c}",
                rng.choice(["stranger", "potential", "intent", "ordered"]),
                now - timedelta(days=30),
                now - timedelta(hours=rng.uniform(0, 200)),
                now - timedelta(hours=rng.uniform(0, 200)),
            )
            for c in range(1, customers + 1)
        ],
    )
    batch = []
    for _ in range(events):
        customer = rng.randint(1, customers)
        kind = rng.choice(KINDS)
        data = (
            {"label": rng.choice(LABELS)}
            if kind == "objection"
            else {"to": "intent"}
            if kind == "stage_changed"
            else {}
        )
        batch.append(
            (
                f"rep{customer % reps:03d}",
                customer,
                kind,
                "预算:20-30万" if kind == "tag_added" else "",
                json.dumps(data),
                now - timedelta(seconds=rng.uniform(0, 30 * 86400)),
            )
        )
        if len(batch) == 100_000:
            con.executemany(
                "INSERT INTO event (account_id, customer_id, kind, text, data, at) VALUES (?,?,?,?,?,?)",
                batch,
            )
            batch.clear()
    if batch:
        con.executemany(
            "INSERT INTO event (account_id, customer_id, kind, text, data, at) VALUES (?,?,?,?,?,?)", batch
        )
    con.commit()
    con.close()


async def main(reps: int, events: int) -> None:
    config = config_for(reps)
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        db = Database(f"sqlite+aiosqlite:///{path}")
        await db.migrate()
        t0 = time.perf_counter()
        fill(path, reps, events, now)
        filled = time.perf_counter() - t0
        print(f"filled {reps} reps, {reps * 100:,} customers, {events:,} events in {filled:.1f} s")
        service = DigestService(
            db,
            VirtualClock(now),
            config,
            TemplateLibrary(config.templates_path),
            ObjectionLibrary.load(config.templates_path),
        )
        day = now.astimezone(config.tz).date()
        timings = []
        for _ in range(5):
            t0 = time.perf_counter()
            parts = await service.for_supervisor(config.supervisors[0], day)
            timings.append(time.perf_counter() - t0)
        await db.close()
        print(f"team digest for {day}: {len(parts)} chat messages, {sum(len(p) for p in parts):,} characters")
        print(
            f"render time: best {min(timings) * 1000:.0f} ms, worst {max(timings) * 1000:.0f} ms over 5 runs"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(main(args.reps, args.events))
