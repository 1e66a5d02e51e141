"""CPU per inbound event: salesbot against a bare python-wechaty bot, side by side (issue 20).

    python bench/hot_path.py [--rounds 3] [--friends 200] [--texts 1000] [--rate 100]
    python bench/hot_path.py --profile [--friends 200] [--texts 1000] [--py-spy PATH]

Each program runs as its own process against a fresh official Node gateway (tests/gateway, the
official PuppetServer over the mock puppet, as the end-to-end tests use it) and gets the same load,
driven through the gateway's control commands: ``--friends`` friend requests (each accepted and
welcomed), then ``--texts`` customer texts from the labelled corpus (about half objections), spread
over those friends, at ``--rate`` events per second. Rounds alternate which program goes first
(salesbot then bare, bare then salesbot, ...) so a busy machine hurts both alike.

Measured from the first event sent to the last message the gateway saw the bot send: the bot
process's CPU time (user + system, every thread, from /proc), per inbound event and as events per
CPU second; peak RSS is the process's high-water mark (VmHWM). Salesbot runs as ``salesbot run``
does (SQLite in a temporary folder, no web server, welcomes without the human-like pauses, coaching
cards off: the bare bot has none); the bare bot is bench/bare_bot.py. A run counts only when the
work was done: every friend welcomed (seen at the gateway), the bare bot's console messages one
per text the corpus labels an objection, salesbot's database holding every text and every customer.

``--statements`` runs salesbot once and counts, per inbound event, the SQL statements SQLite ran
from the start of the load to the stop (by verb, BEGIN and COMMIT included; every connection, on any
thread: a trace callback that a ``sitecustomize`` of the run's folder sets on each ``sqlite3``
connection) and aiosqlite's thread hops (from its debug log: salesbot runs with ``-v``). Before,
it counted aiosqlite's log alone, which the hot units (storage/hot_session.py) no longer go
through. ``--profile`` runs salesbot once under py-spy (a sampling profiler, every thread:
aiosqlite's worker included; not a project dependency: ``pip install py-spy``, or ``--py-spy
PATH``) and prints where its time went during the load: by thread, by area, by function (self and
inclusive).
Stacks of imports, startup, shutdown and of threads waiting are left out. py-spy cannot tell a
sqlite3 call working from one waiting for the lock or the disk; the run's line says which share
of the CPU (from /proc) the event loop's thread used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gateway_peer import GATEWAY_DIR, Gateway  # noqa: E402

CORPUS = ROOT / "bot" / "objections" / "data" / "corpus"
BARE_BOT = ROOT / "bench" / "bare_bot.py"
CONSOLE = "filehelper"
TICKS = os.sysconf("SC_CLK_TCK")
HELLOS = ("你好", "我在小红书看到你的", "抖音直播间来的", "朋友推荐的", "想了解一下")


# -- the bot process, from /proc ----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of ``pid`` so far."""
    return cpu_seconds_of(Path(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU so far of each live thread of ``pid``, by thread id (the main thread's is ``pid``)."""
    seconds: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            seconds[int(task.name)] = cpu_seconds_of(task / "stat")
    return seconds


def cpu_seconds_of(stat_path: Path) -> float:
    fields = stat_path.read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float:
    return status_mb(pid, "VmHWM")


def status_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/PID/status (VmHWM: the peak RSS so far; VmRSS: now), in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def child_of(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii").split()
        if children:
            return int(children[0])
    return None


class StampedGateway(Gateway):
    """The tests' gateway driver, with each reported event stamped with the time and the bot's CPU
    when it arrived (so the measurement ends at the bot's last send, not when we noticed quiet)."""

    bot_pid: int | None = None

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            event["_t"] = time.monotonic()
            if self.bot_pid is not None:
                with contextlib.suppress(OSError):
                    event["_cpu"] = cpu_seconds(self.bot_pid)
            if event.get("event") == "error":
                self.errors.append(event["message"])
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()


# -- the load -------------------------------------------------------------------------------------


def corpus_rows() -> tuple[list[str], list[str]]:
    """The corpus's texts labelled with an objection, and those with neither an objection nor a
    signal (small talk and questions: nothing for the console)."""
    with_objection: list[str] = []
    without: list[str] = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("objection"):
                    with_objection.append(row["text"])
                elif not row.get("signals"):
                    without.append(row["text"])
    return with_objection, without


def labelled_objections(texts: list[str]) -> list[str]:
    """The texts of the load the corpus labels with an objection: the bare bot sends the console
    one message for each (the same transport work as salesbot's, without salesbot's reading)."""
    labelled = set(corpus_rows()[0])
    return [text for text in texts if text in labelled]


def corpus_texts(count: int, seed: int) -> list[str]:
    """``count`` real customer texts: half labelled with an objection, half with neither an objection
    nor a signal (so the console work of both programs is about one message per objection)."""
    with_objection, without = corpus_rows()
    rng = random.Random(seed)
    half = count // 2
    texts = [rng.choice(with_objection) for _ in range(half)] + [
        rng.choice(without) for _ in range(count - half)
    ]
    rng.shuffle(texts)
    return texts


def salesbot_config(folder: Path) -> Path:
    """config.toml as shipped, on the service transport (token and endpoint from the environment),
    SQLite in ``folder``, no web server, no supervisors, no human-like pauses, no coaching cards."""
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    edits = [
        ('templates_dir = "scripts_templates"', f'templates_dir = "{ROOT / "scripts_templates"}"'),
        ('url = "sqlite:///data/salesbot.db"', f'url = "sqlite:///{folder / "bot.db"}"'),
        ("delay_seconds = [3.0, 8.0]", "delay_seconds = [0.0, 0.0]"),
        ("min_gap_seconds = [4.0, 9.0]", "min_gap_seconds = [0.0, 0.0]"),
        ('transport = "local"', 'transport = "service"'),
        (
            "[web]\n# The dashboard and JSON API (http://host:port/). "
            "Set enabled = false to run without them.\nenabled = true",
            "[web]\nenabled = false",
        ),
        ("[coach]\n# The coaching card", "[coach]\nenabled = false\n# The coaching card"),
        (
            "# console gets what to do next and 2-3 playbook scripts to /send.\nenabled = true\n",
            "# console gets what to do next and 2-3 playbook scripts to /send.\n",
        ),
    ]
    for old, new in edits:
        assert text.count(old) == 1, f"config.toml changed: cannot find {old!r}"
        text = text.replace(old, new)
    text, removed = re.subn(r"\n\[\[supervisors\]\].*?(?=\n\[tags\])", "\n", text, flags=re.S)
    assert removed == 1, "config.toml changed: cannot find the [[supervisors]] block"
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- one run ----------------------------------------------------------------------------------------


@dataclass
class Run:
    program: str
    events: int
    cpu: float  # seconds, first event to last send
    wall: float
    peak_rss_mb: float
    welcomes: int
    console: int
    customer_sends: int
    main_thread_share: float  # of the CPU over the run, the event loop's thread's part
    idle_rss_mb: float = 0.0  # started and idle, before the load: imports, model, caches
    problems: list[str] = field(default_factory=list)
    pid: int = 0  # the bot's process

    @property
    def cpu_ms_per_event(self) -> float:
        return 1000 * self.cpu / self.events

    @property
    def events_per_cpu_second(self) -> float:
        return self.events / self.cpu if self.cpu else float("inf")


async def wait_idle(pid: int, *, window: float = 0.5, below: float = 0.03, within: float = 90) -> None:
    """Until the process spends less than ``below`` CPU seconds in ``window``: startup is over."""
    deadline = time.monotonic() + within
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(window)
        now = cpu_seconds(pid)
        if now - before < below:
            return
        before = now
    raise RuntimeError("the bot never went idle")


async def paced(count: int, rate: float, gateway: Gateway, send: Any) -> None:
    """Call ``send(i)`` ``count`` times at ``rate`` per second (0: all at once)."""
    started = time.monotonic()
    for i in range(count):
        send(i)
        if rate:
            delay = started + (i + 1) / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if i % 50 == 49:
            assert gateway._process is not None and gateway._process.stdin is not None
            await gateway._process.stdin.drain()


def sent(gateway: Gateway) -> list[dict[str, Any]]:
    return [e for e in gateway.events if e["event"] == "sent"]


async def run_once(
    program: str,
    friends: int,
    texts: list[str],
    rate: float,
    settle: float,
    py_spy: str | None = None,
    verbose: bool = False,
    trace: bool = False,
    bare_trimmed: bool = False,
) -> tuple[Run, Path]:
    folder = Path(tempfile.mkdtemp(prefix=f"hot-path-{program}-"))
    gateway = StampedGateway(self_name="小林")
    await gateway.start()
    # this checkout first; a PYTHONPATH already set (packages beside the venv) stays after it
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "WECHATY_LOG": "warn"}
    if trace:  # the folder's sitecustomize counts the statements SQLite runs
        (folder / "sitecustomize.py").write_text(TRACING_SITE, encoding="utf-8")
        env |= {"PYTHONPATH": os.pathsep.join((str(folder), path)), "HOT_PATH_TRACE": str(folder)}
    if program == "salesbot":
        config = salesbot_config(folder)
        env |= {"SALESBOT_DEMO_TOKEN": gateway.token, "SALESBOT_DEMO_ENDPOINT": gateway.endpoint}
        argv = [sys.executable, "-m", "bot", "run", "--config", str(config), *(["-v"] if verbose else [])]
    else:
        argv = [sys.executable, str(BARE_BOT), "--endpoint", gateway.endpoint, "--token", gateway.token]
        objections = folder / "objections.json"
        objections.write_text(json.dumps(labelled_objections(texts), ensure_ascii=False), encoding="utf-8")
        argv += ["--objections", str(objections), *(["--trimmed"] if bare_trimmed else [])]
    profile = folder / "profile.txt"
    if py_spy:
        argv = [
            py_spy,
            "record",
            "--threads",
            "--rate",
            "100",
            "--format",
            "raw",
            "-o",
            str(profile),
            "--",
            *argv,
        ]
    log = (folder / "bot.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        pid = process.pid
        if py_spy:
            for _ in range(200):
                if (found := child_of(process.pid)) is not None:
                    pid = found
                    break
                await asyncio.sleep(0.05)
        gateway.bot_pid = pid
        await gateway.wait_for(lambda e: e["event"] == "started", within=90)
        await wait_idle(pid)
        idle_rss = status_mb(pid, "VmRSS")
        if trace:  # the statements so far: the startup's, not the events'
            os.kill(pid, signal.SIGUSR1)
            written = folder / f"statements-before-{pid}.json"
            for _ in range(200):
                if written.exists():
                    break
                if process.returncode is not None:
                    raise RuntimeError(f"the bot ended ({process.returncode}) on SIGUSR1 (see {folder})")
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"the bot wrote no statement counts on SIGUSR1 (see {folder})")
        mark = time.monotonic()
        cpu_start, started = cpu_seconds(pid), time.monotonic()
        threads_start = thread_cpu_seconds(pid)

        def befriend(i: int) -> None:
            gateway.add_stranger(f"c{i}", f"客户{i}", HELLOS[i % len(HELLOS)])

        await paced(friends, rate, gateway, befriend)

        def welcomed() -> int:
            return len({e["to"] for e in sent(gateway) if e["to"] != CONSOLE})

        deadline = time.monotonic() + 60 + friends
        while welcomed() < friends and time.monotonic() < deadline:  # noqa: ASYNC110 (polls the gateway)
            await asyncio.sleep(0.1)
        await paced(len(texts), rate, gateway, lambda i: gateway.customer_says(f"c{i % friends}", texts[i]))
        # done once nothing has been sent for `settle` seconds and the bot is idle
        deadline = time.monotonic() + 120 + len(texts) / 10
        while time.monotonic() < deadline:
            before = cpu_seconds(pid)
            await asyncio.sleep(0.5)
            last = max((e["_t"] for e in sent(gateway)), default=started)
            if time.monotonic() - last >= settle and cpu_seconds(pid) - before < 0.03:
                break
        threads_end = thread_cpu_seconds(pid)
        used = {tid: cpu - threads_start.get(tid, 0.0) for tid, cpu in threads_end.items()}
        outgoing = [e for e in sent(gateway) if e["_t"] >= mark]
        last_send = max(outgoing, key=lambda e: e["_t"])
        run = Run(
            program=program,
            events=friends + len(texts),
            cpu=last_send["_cpu"] - cpu_start,
            wall=last_send["_t"] - started,
            peak_rss_mb=peak_rss_mb(pid),
            welcomes=welcomed(),
            console=sum(1 for e in outgoing if e["to"] == CONSOLE),
            customer_sends=sum(1 for e in outgoing if e["to"] != CONSOLE),
            main_thread_share=used.get(pid, 0.0) / (sum(used.values()) or 1),
            idle_rss_mb=idle_rss,
            pid=pid,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)  # salesbot stops cleanly; py-spy writes its profile
        try:
            await asyncio.wait_for(process.wait(), 60)
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        log.close()
        await gateway.close()
        with (folder / "gateway-events.jsonl").open("w", encoding="utf-8") as out:
            for event in gateway.events:
                out.write(json.dumps(event, ensure_ascii=False) + "\n")
    run.problems += [f"gateway: {error}" for error in gateway.errors]
    if run.welcomes != friends:
        run.problems.append(f"{run.welcomes} of {friends} friends welcomed")
    if program == "salesbot":
        with contextlib.closing(sqlite3.connect(folder / "bot.db")) as db:
            inbound = db.execute("SELECT count(*) FROM event WHERE kind = 'message_in'").fetchone()[0]
            customers = db.execute("SELECT count(*) FROM customer").fetchone()[0]
        if inbound != len(texts):
            run.problems.append(f"{inbound} of {len(texts)} texts recorded")
        if customers != friends:
            run.problems.append(f"{customers} customers for {friends} friends")
        if not run.console:
            run.problems.append("no console message at all")
    else:
        expected = len(labelled_objections(texts))
        if run.console != expected:
            run.problems.append(f"{run.console} console messages for {expected} labelled objections")
    return run, folder


# -- reports ----------------------------------------------------------------------------------------


def describe(run: Run) -> str:
    return (
        f"{run.program:8}  {run.cpu_ms_per_event:6.2f} ms/event  "
        f"{run.events_per_cpu_second:7.0f} events/CPU s  "
        f"peak RSS {run.peak_rss_mb:5.0f} MB (idle {run.idle_rss_mb:.0f})  "
        f"CPU {run.cpu:6.2f} s in {run.wall:5.1f} s "
        f"({100 * run.main_thread_share:.0f}% event loop thread)  "
        f"welcomes {run.welcomes}, console {run.console}, other sends {run.customer_sends - run.welcomes}"
        + (f"  PROBLEMS: {'; '.join(run.problems)}" if run.problems else "")
    )


async def measure(args: argparse.Namespace) -> int:
    texts = corpus_texts(args.texts, args.seed)
    pairs: list[tuple[Run, Run]] = []
    for round_no in range(1, args.rounds + 1):
        order = ("salesbot", "bare") if round_no % 2 else ("bare", "salesbot")
        runs: dict[str, Run] = {}
        for program in order:
            run, folder = await run_once(
                program, args.friends, texts, args.rate, args.settle, bare_trimmed=args.bare_trimmed
            )
            runs[program] = run
            print(f"round {round_no}  {describe(run)}", flush=True)
            if run.problems or args.keep:
                print(f"  (logs, gateway events and database kept in {folder})", flush=True)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        ours, bare = runs["salesbot"], runs["bare"]
        pairs.append((ours, bare))
        print(
            f"round {round_no}  salesbot / bare: CPU per event {ours.cpu / bare.cpu:.1f}x, "
            f"peak RSS {ours.peak_rss_mb / bare.peak_rss_mb:.2f}x",
            flush=True,
        )
    median = statistics.median
    print(
        f"\nmedian of {len(pairs)} rounds ({args.friends} friend requests + {args.texts} texts at "
        f"{args.rate or 'unlimited'}/s):\n"
        f"  salesbot {median(o.cpu_ms_per_event for o, _ in pairs):.2f} ms/event, "
        f"{median(o.events_per_cpu_second for o, _ in pairs):.0f} events/CPU s, "
        f"peak RSS {median(o.peak_rss_mb for o, _ in pairs):.0f} MB\n"
        f"  bare     {median(b.cpu_ms_per_event for _, b in pairs):.2f} ms/event, "
        f"{median(b.events_per_cpu_second for _, b in pairs):.0f} events/CPU s, "
        f"peak RSS {median(b.peak_rss_mb for _, b in pairs):.0f} MB\n"
        f"  ratio    CPU per event {median(o.cpu / b.cpu for o, b in pairs):.1f}x, "
        f"peak RSS {median(o.peak_rss_mb / b.peak_rss_mb for o, b in pairs):.2f}x"
    )
    return 1 if any(run.problems for pair in pairs for run in pair) else 0


# -- database round trips ------------------------------------------------------------------------

AIOSQLITE_CALL = re.compile(
    r"DEBUG aiosqlite: executing functools\.partial\(<(?:built-in|bound) method (\w+)"
)
# what the bot process loads first (PYTHONPATH): a trace callback on every sqlite3 connection,
# counting statements by verb; the counts so far are written as JSON, named by the process's id
# (its children, Alembic's, load it too), on SIGUSR1 (when the load starts) and when it ends. The
# lock is re-entrant: the signal's handler runs on the main thread, maybe inside _traced.
TRACING_SITE = """
import atexit, collections, json, os, signal, sqlite3, threading

_counts = collections.Counter()
_lock = threading.RLock()
_connect = sqlite3.connect


def _traced(sql):
    verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    with _lock:
        _counts[verb] += 1


def connect(*args, **kwargs):
    connection = _connect(*args, **kwargs)
    connection.set_trace_callback(_traced)
    return connection


def _write(name):
    with _lock:
        text = json.dumps(_counts)
    folder = os.environ["HOT_PATH_TRACE"]
    with open(os.path.join(folder, f"{name}-{os.getpid()}.json"), "w") as out:
        out.write(text)


sqlite3.connect = connect
signal.signal(signal.SIGUSR1, lambda *_: _write("statements-before"))
atexit.register(_write, "statements")
"""


def aiosqlite_hops(log: Path) -> Counter[str]:
    """aiosqlite's thread hops, by sqlite3 method, from a ``salesbot run -v`` log, counted from
    the first event to the stop."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    first = next(i for i, line in enumerate(lines) if "friend request from" in line)
    calls: Counter[str] = Counter()
    for line in lines[first:]:
        if "DEBUG aiosqlite: executing" in line:
            calls["thread hops (aiosqlite)"] += 1
            if method := AIOSQLITE_CALL.search(line):
                calls[f"hop: {method[1]}"] += 1
    return calls


async def statements(args: argparse.Namespace) -> int:
    texts = corpus_texts(args.texts, args.seed)
    run, folder = await run_once(
        "salesbot", args.friends, texts, args.rate, args.settle, verbose=True, trace=True
    )
    print(describe(run) + "  (debug logging and statement tracing on: slower)")
    counts = {name: folder / f"{name}-{run.pid}.json" for name in ("statements-before", "statements")}
    if missing := [str(path) for path in counts.values() if not path.exists()]:
        print(f"no statement counts ({', '.join(missing)}): the bot did not stop cleanly")
        return 1
    before = json.loads(counts["statements-before"].read_text(encoding="utf-8"))
    after = json.loads(counts["statements"].read_text(encoding="utf-8"))
    print(f"per inbound event ({run.events}), everything from the start of the load to the stop")
    print("included (handling, dispatch, echoes, timers, shutdown):")
    for verb in sorted(after):
        print(f"  {(after[verb] - before.get(verb, 0)) / run.events:6.2f}  statement: {verb}")
    for key, count in sorted(aiosqlite_hops(folder / "bot.log").items()):
        print(f"  {count / run.events:6.2f}  {key}")
    shutil.rmtree(folder, ignore_errors=True)
    return 1 if run.problems else 0


# -- the profile ------------------------------------------------------------------------------------

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")
STARTUP_OR_SHUTDOWN = (
    "_find_and_load",
    "Runtime.start",
    "Runtime.stop",
    "start (bot/runner",
    "stop (bot/runner",
    "run_migrations",
)
# leaf frames where a thread waits rather than works: py-spy cannot tell them apart here
WAITING = re.compile(
    r"_connection_worker_thread \(aiosqlite/core\.py:59\)"  # the worker's queue.get()
    r"|\.select \(selectors\.py"  # the event loop waiting for the sockets
    r"|_worker \(concurrent/futures/thread\.py:81\)"  # the default executor's queue.get()
    r"|wait \(threading\.py"
    r"|^thread \("  # no Python frame at all
)
# the leaf of a worker thread running one sqlite3 call: SQLite's own work (the GIL released), and
# any wait for the disk or the database lock
SQLITE_CALL = "_connection_worker_thread (aiosqlite/core.py:63)"
TOP_LEVEL = ("<module>", "main (bot/cli", "_run (bot/cli", "sink (bot/app", "_sink_for")


# py-spy names some of our files by their base name only
OUR_FILES = {
    path.name: str(path.relative_to(ROOT))
    for folder in ("bot", "storage")
    for path in (ROOT / folder).rglob("*.py")
    if path.name != "__init__.py"
}


def frame_name(frame: str) -> tuple[str, str]:
    """(function, file) of one py-spy frame, file shortened to its package path."""
    match = FRAME.match(frame)
    func, file = (match["func"], match["file"]) if match else (frame, "")
    file = re.sub(r".*/site-packages/", "", file)
    file = re.sub(r".*/lib/python3\.\d+/", "", file)
    file = file.replace(str(ROOT) + "/", "")
    return func, OUR_FILES.get(file, file)


def library(file: str) -> str:
    if file.startswith(("bot/", "storage/")):
        return file.split("/")[0] + "/" + file.split("/")[1].removesuffix(".py")
    return file.split("/")[0].removesuffix(".py") or "?"


AREAS = {  # library -> what it is there for
    "sqlite3 (SQLite itself)": "SQLite itself (in aiosqlite's threads)",
    "aiosqlite": "aiosqlite: a thread hop per statement",
    "sqlalchemy": "SQLAlchemy + SQLModel (ORM, Core, async adaption)",
    "sqlmodel": "SQLAlchemy + SQLModel (ORM, Core, async adaption)",
    "greenlet": "SQLAlchemy + SQLModel (ORM, Core, async adaption)",
    "asyncio": "asyncio event loop",
    "selectors": "asyncio event loop",
    "socket": "asyncio event loop",
    "grpclib": "gRPC + Wechaty client (grpclib, h2, betterproto, wechaty)",
    "h2": "gRPC + Wechaty client (grpclib, h2, betterproto, wechaty)",
    "hpack": "gRPC + Wechaty client (grpclib, h2, betterproto, wechaty)",
    "hyperframe": "gRPC + Wechaty client (grpclib, h2, betterproto, wechaty)",
    "betterproto": "gRPC + Wechaty client (grpclib, h2, betterproto, wechaty)",
    "wechaty": "gRPC + Wechaty client (grpclib, h2, betterproto, wechaty)",
    "wechaty_puppet": "gRPC + Wechaty client (grpclib, h2, betterproto, wechaty)",
    "wechaty_puppet_service": "gRPC + Wechaty client (grpclib, h2, betterproto, wechaty)",
    "wechaty_grpc": "gRPC + Wechaty client (grpclib, h2, betterproto, wechaty)",
    "pyee": "gRPC + Wechaty client (grpclib, h2, betterproto, wechaty)",
    "jinja2": "Jinja2 templates",
    "markupsafe": "Jinja2 templates",
    "marisa_trie": "reading the text (model, rjieba, marisa-trie)",
    "rjieba": "reading the text (model, rjieba, marisa-trie)",
    "bot/objections": "reading the text (model, rjieba, marisa-trie)",
    "logging": "logging",
}


def area(lib: str) -> str:
    if lib in AREAS:
        return AREAS[lib]
    if lib.startswith(("bot/", "storage/")):
        return "salesbot's own code (bot/, storage/)"
    return "other: " + lib


def thread_group(thread: str) -> str:
    if "MainThread" in thread:
        return "event loop (main thread)"
    if "_connection_worker_thread" in thread:
        return "aiosqlite connection threads"
    if "asyncio_" in thread:
        return "default executor"
    return thread


def print_profile(path: Path, top: int) -> None:
    """Where the sampled time went, from py-spy's raw (collapsed stack) output."""
    self_by_func: Counter[str] = Counter()
    total_by_func: Counter[str] = Counter()
    self_by_library: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    main_by_area: Counter[str] = Counter()  # the event loop's thread: most of the CPU (see a run's split)
    skipped = waiting = total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if any(marker in stack for marker in STARTUP_OR_SHUTDOWN):
            skipped += count
            continue
        if WAITING.search(frames[-1]):
            waiting += count
            continue
        total += count
        thread, frames = (frames[0], frames[1:]) if frames[0].startswith("thread") else ("?", frames)
        by_thread[thread_group(thread)] += count
        named = [frame_name(f) for f in frames]
        func, file = named[-1]
        if frames[-1].endswith(SQLITE_CALL):
            self_by_func["sqlite3 calls in aiosqlite's thread (SQLite itself, disk and lock waits)"] += count
            self_by_library["sqlite3 (SQLite itself)"] += count
        else:
            self_by_func[f"{func} ({file})"] += count
            self_by_library[library(file)] += count
        if "MainThread" in thread:
            main_by_area[area(library(file))] += count
        for func, file in set(named):
            total_by_func[f"{func} ({file})"] += count
    if not total:
        print("no samples")
        return

    def table(title: str, counter: Counter[str], keep: Any = lambda key: True) -> None:
        print(f"\n{title}")
        for key, count in [(k, v) for k, v in counter.most_common() if keep(k)][:top]:
            print(f"  {100 * count / total:5.1f}%  {key}")

    print(
        f"{total} samples of work during the load (left out: {skipped} of startup, imports and "
        f"shutdown, {waiting} of threads waiting)"
    )
    table("by thread", by_thread)
    by_area: Counter[str] = Counter()
    for lib, count in self_by_library.items():
        by_area[area(lib)] += count
    table("where the time goes (self time, by what the leaf frame's package is)", by_area)
    main_total = sum(main_by_area.values()) or 1
    print("\nthe event loop's thread alone (per cent of its samples; aiosqlite's threads mostly wait)")
    for key, count in main_by_area.most_common(top):
        print(f"  {100 * count / main_total:5.1f}%  {key}")
    table("self time by library (the leaf frame's package)", self_by_library)
    table("self time by function", self_by_func)
    table(
        "inclusive time, salesbot's own functions",
        total_by_func,
        lambda k: ("(bot/" in k or "(storage/" in k) and not any(t in k for t in TOP_LEVEL),
    )
    table(
        "inclusive time, libraries",
        total_by_func,
        lambda k: "(bot/" not in k and "(storage/" not in k and "threading.py" not in k and "runpy" not in k,
    )


async def profile(args: argparse.Namespace) -> int:
    py_spy = args.py_spy or shutil.which("py-spy")
    if not py_spy:
        print("py-spy not found: pip install py-spy (or pass --py-spy PATH)", file=sys.stderr)
        return 2
    texts = corpus_texts(args.texts, args.seed)
    run, folder = await run_once("salesbot", args.friends, texts, args.rate, args.settle, py_spy=py_spy)
    print(describe(run) + "  (under the profiler: slower than unprofiled)")
    print_profile(folder / "profile.txt", args.top)
    print(f"\nraw profile (collapsed stacks, for flamegraph.pl or speedscope): {folder / 'profile.txt'}")
    return 1 if run.problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of salesbot + bare bot (default 3)")
    parser.add_argument("--friends", type=int, default=200, help="friend requests per run (default 200)")
    parser.add_argument("--texts", type=int, default=1000, help="customer texts per run (default 1000)")
    parser.add_argument(
        "--rate", type=float, default=100, help="events per second sent (0: at once; default 100)"
    )
    parser.add_argument("--settle", type=float, default=3.0, help="seconds without a send that end a run")
    parser.add_argument("--seed", type=int, default=20, help="which corpus texts (default 20)")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (logs, events, database)")
    parser.add_argument(
        "--bare-trimmed",
        action="store_true",
        help="the bare bot without PyGithub and Quart, as salesbot runs (see bench/bare_bot.py)",
    )
    parser.add_argument("--profile", action="store_true", help="profile salesbot under py-spy instead")
    parser.add_argument(
        "--statements", action="store_true", help="count salesbot's database round trips per event instead"
    )
    parser.add_argument("--py-spy", default="", help="py-spy executable (default: on PATH)")
    parser.add_argument("--top", type=int, default=15, help="rows per profile table (default 15)")
    args = parser.parse_args()
    if not (GATEWAY_DIR / "node_modules" / "wechaty-puppet-service").is_dir():
        print(f"the gateway's Node packages are missing: cd {GATEWAY_DIR} && npm install", file=sys.stderr)
        return 2
    if args.statements:
        return asyncio.run(statements(args))
    return asyncio.run(profile(args) if args.profile else measure(args))


if __name__ == "__main__":
    sys.exit(main())
