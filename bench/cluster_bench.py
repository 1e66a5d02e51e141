"""Several salesbot processes on one PostgreSQL: throughput with 1, 2 and 3 processes, failover time.

    python bench/cluster_bench.py [--server postgresql://salesbot:salesbot@127.0.0.1/postgres]
                                  [--requests 120] [--processes 1 2 3] [--lease 3]

The rig of the soak test (tests/cluster_rig.py): 6 accounts, each behind the official Node
puppet-service gateway (one Node process serving them all), real ``salesbot run`` processes, a
fresh database per run on ``--server`` (the user must be allowed to create databases). For each
process count: start the processes, wait until every account is owned and logged in, then a burst
of ``--requests`` friend requests spread over the accounts. Reported, end to end at the gateways:
inbound events stored per second (request received, accepted, customer and welcome planned, one
commit) and welcomes sent per second (each account paces its welcomes: ``[welcome]
min_gap_seconds`` 0.05-0.1 s here), both as ratios against the 1-process run of the same
invocation. Then, with the most processes, failover: SIGKILL the owner of an account, ask that
account for a friend at once, and time until its lease has moved and until the welcome went out
(the lease on the same host moves at the next heartbeat, a third of ``--lease``: the dead pid is
noticed; on another host it would wait out the lease).

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
    server: str, processes: int, requests: int, lease: float, failover: bool
) -> dict[str, float]:
    url, name = await fresh_database(server)
    result: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            async with Rig(Path(folder), url, lease_seconds=lease) as rig:
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
                    victim = next(p for p in rig.live if p.pid == owners[account])
                    victim.kill()
                    killed = time.monotonic()
                    rig.friend_request(account, "failover")

                    async def moved() -> bool:
                        owner = (await rig.owners()).get(account)
                        return owner is not None and owner != victim.pid

                    async def sent() -> bool:
                        return rig.sends_to(account, "failover") > 0

                    result["lease_moved_s"] = await until(moved, 120, "the lease to move") - killed
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
    parser.add_argument("--lease", type=float, default=3.0)
    args = parser.parse_args()

    runs: dict[int, dict[str, float]] = {}
    for n in args.processes:
        runs[n] = await one_run(args.server, n, args.requests, args.lease, failover=n == max(args.processes))
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
            f"failover after SIGKILL ({max(runs)} processes): lease moved in {last['lease_moved_s']:.1f} s, "
            f"the killed account's next welcome sent {last['failover_welcome_s']:.1f} s after the kill"
        )


if __name__ == "__main__":
    asyncio.run(main())
