"""Instructions per customer text in salesbot's inbound path, counted by valgrind (issue 20).

CPU time on a shared machine moves by 30% and more between runs of the same code, which hides a
change worth 2%. Valgrind's cachegrind counts the instructions the process executes instead: the
same code gives the same count within about 0.1% (hash seeds fixed). It is ~30 times slower, so
the workload is small: ``bench/inbound_cpu.py``'s (the simulator over the local puppet, SQLite in a
temporary folder), run twice, with ``--texts`` texts and with ``--base`` texts; the difference of
the counts over the difference of texts is what one more text costs, startup and imports left out
(and, as in ``inbound_cpu.py``, the nudges and follow-ups that fall due when the simulator's
clock moves on every 50 texts).

    .venv/bin/python bench/instructions.py [--texts 120] [--base 20] [--checkout PATH ...]

Each ``--checkout`` (a git worktree of another revision, say) is measured with its own code on
``PYTHONPATH``; without one, this checkout. Needs ``valgrind`` (a system package, not a project
dependency). Instructions are not time: a cache miss or a disk flush costs time and few
instructions, so confirm a change with ``bench/hot_path.py`` too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = """
import asyncio, sys
sys.path.insert(0, {root!r})
from bench.inbound_cpu import measure
asyncio.run(measure({friends}, {texts}, 1))
"""


def instructions(checkout: Path, texts: int, friends: int) -> int:
    """Instructions valgrind counted for the workload with ``texts`` texts, run from ``checkout``."""
    code = WORKLOAD.format(root=str(checkout), friends=friends, texts=texts)
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(checkout)}
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    done = subprocess.run(
        [*command, sys.executable, "-c", code],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed in {checkout}:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


async def per_text(checkout: Path, texts: int, base: int, friends: int) -> float:
    """Instructions one more text costs: both runs at once (they are independent processes)."""
    more, fewer = await asyncio.gather(
        asyncio.to_thread(instructions, checkout, texts, friends),
        asyncio.to_thread(instructions, checkout, base, friends),
    )
    return (more - fewer) / (texts - base)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=120, help="texts in the measured run (default 120)")
    parser.add_argument("--base", type=int, default=20, help="texts in the run subtracted (default 20)")
    parser.add_argument("--friends", type=int, default=50, help="customers the texts come from (default 50)")
    parser.add_argument("--checkout", type=Path, action="append", help="a checkout to measure (repeatable)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt install valgrind)")
    if args.texts <= args.base:
        parser.error("--texts must be more than --base")
    checkouts = [path.resolve() for path in args.checkout or [ROOT]]
    counts = {path: asyncio.run(per_text(path, args.texts, args.base, args.friends)) for path in checkouts}
    first = counts[checkouts[0]]
    for path, count in counts.items():
        print(f"{count / 1e6:8.2f} M instructions a text  {count / first:6.3f}x  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
