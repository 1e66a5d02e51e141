"""Several salesbot processes on one PostgreSQL: throughput with 1, 2 and 3 processes, failover time.

    python bench/cluster_bench.py [--server postgresql://salesbot:salesbot@127.0.0.1/postgres]
                                  [--requests 120] [--processes 1 2 3] [--lease 10] [--logs DIR]

The rig of the soak test (tests/cluster_rig.py): 6 accounts, each behind the official Node
puppet-service gateway (one Node process serving them all), real ``salesbot run`` processes, a
fresh database per run on ``--server`` (the user must be allowed to create databases). For each
process count: start the processes, wait until every account is owned and logged in, then a burst
of ``--requests`` friend requests spread over the accounts. Reported, end to end at the gateways:
inbound events stored per second (request received, accepted, customer and welcome planned, one
commit) and welcomes sent per second (each account paces its welcomes: ``[welcome]
min_gap_seconds`` 0.05-0.1 s here), both as ratios against the 1-process run of the same
invocation. Then, with the most processes, failover: SIGKILL the owner of an account and time
until its lease has moved, until the new owner is logged in at the gateway, and until a friend
request sent then is welcomed (on the same host the lease moves at the next heartbeat, a third of
``--lease``, since the dead pid is noticed; on another host it would wait out the lease). The
lease must outlast the longest stall of a process's event loop: with 3 s, a burst on two busy
cores delayed heartbeats past it and live processes took each other's accounts.

The ratios depend on the machine's cores: every process, the gateway and PostgreSQL share them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from tests.cluster_rig import Rig  # noqa: E402


async def fresh_database(server: str) -> tuple[str, str]:
    """A new empty database on ``server``: (its SQLAlchemy URL, its name)."""
    name = f"salesbot_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}", name


async def drop_database(server: str, name: str) -> None:
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def until(check: object, within: float, what: str) -> float:
    """Poll ``check`` (an async callable returning bool) until true; returns when (monotonic)."""
    deadline = time.monotonic() + within
    while True:
        if await check():  # type: ignore[operator]
            return time.monotonic()
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def welcomes(rig: Rig) -> int:
    """Requests whose customer got a text (the welcome) at the gateway."""
    return sum(1 for account, contacts in rig.requested.items() for c in contacts if rig.sends_to(account, c))


async def one_run(
    server: str, processes: int, requests: int, lease: float, failover: bool, logs: Path | None = None
) -> dict[str, float]:
    url, name = await fresh_database(server)
    result: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) if logs is None else logs / f"{processes}-processes"
            folder.mkdir(parents=True, exist_ok=True)
            async with Rig(folder, url, lease_seconds=lease) as rig:
                for _ in range(processes):
                    rig.start()
                share = -(-len(rig.accounts) // processes)
                await rig.wait_owners(
                    lambda o: (
                        rig.all_owned_by_live(o)
                        and all(list(o.values()).count(p.pid) <= share for p in rig.live)
                    ),
                    within=180,
                )
                await rig.logged_in(within=180)
                await asyncio.sleep(2 * lease)  # let handovers and their logins settle

                async def stored() -> bool:
                    return len(await rig.customers()) >= requests

                async def welcomed() -> bool:  # every welcome sent (or, rarely, failed: not waited for)
                    rows = await rig.rows("welcome")
                    return len(rows) >= requests and all(r.status not in ("pending", "claimed") for r in rows)

                began = time.monotonic()
                for i in range(requests):
                    rig.friend_request(rig.accounts[i % len(rig.accounts)], f"b{i:05d}")
                result["stored_per_s"] = requests / (await until(stored, 300, "customers") - began)
                result["welcomed_per_s"] = requests / (await until(welcomed, 300, "welcomes") - began)
                result["welcomes_at_gateway"] = welcomes(rig)

                if failover:
                    owners = await rig.owners()
                    account = rig.accounts[0]
                    gateway = rig.gateways[account]
                    logins = sum(1 for e in gateway.events if e["event"] == "started")
                    victim = next(p for p in rig.live if p.pid == owners[account])
                    victim.kill()
                    killed = time.monotonic()

                    async def moved() -> bool:
                        owner = (await rig.owners()).get(account)
                        return owner is not None and owner != victim.pid

                    async def reconnected() -> bool:
                        return sum(1 for e in gateway.events if e["event"] == "started") > logins

                    async def sent() -> bool:
                        return rig.sends_to(account, "failover") > 0

                    result["lease_moved_s"] = await until(moved, 120, "the lease to move") - killed
                    result["reconnected_s"] = await until(reconnected, 120, "the new owner's login") - killed
                    # a request sent while nobody was logged in would be lost by this gateway: ask now
                    rig.friend_request(account, "failover")
                    result["failover_welcome_s"] = await until(sent, 120, "the failover welcome") - killed
                for process in rig.live:
                    process.stop()
    finally:
        await drop_database(server, name)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", default="postgresql://salesbot:salesbot@127.0.0.1/postgres")
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--logs", type=Path, default=None, help="keep each run's config and logs here")
    args = parser.parse_args()

    runs: dict[int, dict[str, float]] = {}
    for n in args.processes:
        failover = n == max(args.processes)
        runs[n] = await one_run(args.server, n, args.requests, args.lease, failover, args.logs)
        print(f"{n} process(es): {runs[n]}", flush=True)
    base = runs[min(runs)]
    print(f"\n{args.requests} friend requests over 6 accounts, lease {args.lease:g} s")
    print("processes  stored/s  (ratio)  welcomed/s  (ratio)")
    for n, r in runs.items():
        print(
            f"{n:>9}  {r['stored_per_s']:8.1f}  ({r['stored_per_s'] / base['stored_per_s']:4.2f}x)"
            f"  {r['welcomed_per_s']:10.1f}  ({r['welcomed_per_s'] / base['welcomed_per_s']:4.2f}x)"
        )
    last = runs[max(runs)]
    if "lease_moved_s" in last:
        print(
            f"failover after SIGKILL ({max(runs)} processes): lease moved {last['lease_moved_s']:.1f} s, "
            f"account logged in again {last['reconnected_s']:.1f} s, first welcome after the kill "
            f"{last['failover_welcome_s']:.1f} s (the request sent once it was back)"
        )


if __name__ == "__main__":
    asyncio.run(main())
