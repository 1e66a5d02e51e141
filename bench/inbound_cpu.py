"""CPU inside salesbot's inbound handlers, in process (issue 20): the fastest loop for the inbound
path alone, without the gateway, the dispatch or the echoes that ``bench/hot_path.py`` includes.

A Harness (the simulator over the local puppet, SQLite in a temporary folder) takes friend
requests, welcomes them, then the corpus texts ``hot_path.py`` uses, spread over those friends.
The process CPU (every thread: aiosqlite's too) spent while ``CustomerWrote`` or
``WelcomeService.on_friend_request`` runs is summed per kind; "text, everything" is all the
process's CPU over the texts (the handlers, the sends they cause through the local puppet, the
puppet's echoes of them, and the simulator's own reads of what was sent), per text. Compare runs
of two checkouts on the same machine, alternating, and read ratios: the machine's load moves the
milliseconds.

    PYTHONPATH=$PWD .venv/bin/python bench/inbound_cpu.py --friends 50 --texts 300
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hot_path import corpus_texts  # noqa: E402
from tests.conftest import MONDAY_10AM, make_config  # noqa: E402
from tests.harness import Harness  # noqa: E402


async def measure(friends: int, texts: int, seed: int) -> dict[str, tuple[int, float]]:
    spent: dict[str, list[float]] = {"customer text": [], "friend request": []}

    def timed(kind: str, handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def run(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return await handler(*args, **kwargs)
            finally:
                spent[kind].append(time.process_time() - started)

        return run

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{folder}/bench.db"
        async with Harness(make_config(), MONDAY_10AM, database_url=url) as sim:
            welcome = sim.bot.welcome
            setattr(sim.bot, "customer_wrote", timed("customer text", sim.bot.customer_wrote))  # noqa: B010
            setattr(welcome, "on_friend_request", timed("friend request", welcome.on_friend_request))  # noqa: B010
            await sim.with_customers(*[(f"c{i}", f"客户{i}") for i in range(friends)])
            started = time.process_time()
            for n, text in enumerate(corpus_texts(texts, seed)):
                await sim.customer_says(f"c{n % friends}", text)
                if n % 50 == 49:  # let the nudges and follow-ups fall due now and then
                    await sim.advance(timedelta(minutes=3))
            whole = time.process_time() - started
    measured = {kind: (len(times), sum(times)) for kind, times in spent.items()}
    return {**measured, "text, everything": (texts, whole)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--friends", type=int, default=50)
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for kind, (count, seconds) in asyncio.run(measure(args.friends, args.texts, args.seed)).items():
        print(f"{kind:17} {count:5} events  {1000 * seconds / max(count, 1):6.2f} ms CPU each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
