"""``salesbot run``: start every configured account and dispatch the outbox on real time."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from bot.app import SalesBot
from bot.clock import OffsetClock, SystemClock
from bot.config import Config
from bot.errors import SalesbotError
from bot.gathered_sends import GatheredSends
from bot.hooks import Planned
from bot.redaction import add_secret
from bot.services.cluster import AlreadyRunning
from bot.timers import CLUSTER_HEARTBEAT, DISPATCH_POLL, DISPATCH_WAKE, Timers
from bot.transport.local_puppet import LocalPuppet

if TYPE_CHECKING:  # the web UI (aiohttp, its pages) is imported only when it is enabled
    from aiohttp import web

log = logging.getLogger("salesbot")

# how long stopping waits for a dispatch that is sending a message
STOP_GRACE_SECONDS = 10.0
WEB_SHUTDOWN_SECONDS = 2.0
# where a generated web token goes when stdout is not a terminal (next to the config file)
WEB_TOKEN_FILE = "web-token"
TOKEN_USE = "send it as 'Authorization: Bearer <token>' or ?token="


def shown_url(url: str) -> str:
    """A database URL fit to print: its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # config validation only checked the scheme
        return url.split("://", 1)[0] + "://..."


def database_password(url: str) -> str | None:
    try:
        password = make_url(url).password
    except Exception:
        return None
    return str(password) if password else None


def generated_token_note(token: str, config_path: str, *, terminal: bool | None = None) -> str:
    """Where the operator finds a generated web token. A terminal shows it once (the banner is
    printed, never logged); anything else (a service manager, a log file) gets the path of an
    owner-only file instead, so the token never lands in a log."""
    if terminal is None:
        terminal = sys.stdout.isatty()
    if terminal:
        return f"access token (generated): {token}   {TOKEN_USE}"
    path = Path(config_path).resolve().parent / WEB_TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.chmod(path, 0o600)  # an existing file keeps its mode otherwise
            file.write(token + "\n")
    except OSError as exc:
        return (
            f"access token (generated) not shown (output is not a terminal) and {path} "
            f"cannot be written ({exc.strerror or exc}): set [web] token or SALESBOT_WEB_TOKEN"
        )
    return f"access token (generated): in {path} (readable by you only)   {TOKEN_USE}"


def lan_address() -> str:
    """This machine's address on its network (the interface a default route uses): what a phone on
    the same network opens. A UDP "connect" sends nothing; no route gives the host name instead."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never reached, only routed
            return str(probe.getsockname()[0])
    except OSError:
        return socket.gethostname()


def phone_url(host: str, port: int) -> str:
    """The login page's address for another device (never with the token: it is typed there)."""
    if host in ("0.0.0.0", "::", ""):
        host = lan_address()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/login"


def banner(
    config: Config,
    config_path: str,
    web_url: str = "",
    token_note: str = "",
    failed: dict[str, str] | None = None,
    owned: Collection[str] | None = None,
    phone: str = "",
) -> str:
    """``owned``: the accounts this process runs (None: all; others belong to other processes);
    ``phone``: the login page's address when the web UI listens beyond loopback."""
    lines = [
        "salesbot is running",
        f"  config:    {config_path}",
        f"  timezone:  {config.timezone}",
        f"  database:  {shown_url(config.database.url)}",
    ]
    if web_url:
        lines.append(f"  dashboard: {web_url}/dashboard   (JSON API under {web_url}/api/)")
        if any(a.transport == "local" for a in config.accounts):
            lines.append(f"  simulator: {web_url}/simulator   (play a customer and the rep in your browser)")
    if token_note:
        lines.append(f"  {token_note}")
    if phone:
        lines.append(f"  from a phone: {phone}   (sign in there with the access token, once per device)")
    for account in config.accounts:
        if owned is not None and account.id not in owned:
            lines.append(f"  account {account.id}: run by another process (taken over if it stops)")
            continue
        where = (
            "embedded local puppet (no WeChat account)"
            if account.transport == "local"
            else f"puppet service at {account.service_endpoint()}"
        )
        lines.append(
            f"  account {account.id}: {account.profile.nickname} ({account.profile.role}) via {where}"
        )
    if any(a.transport == "local" for a in config.accounts):
        lines += [
            "",
            "No phone is attached to the local puppet: open the simulator above, or play a scenario:",
            "  salesbot simulate examples/welcome.toml",
            'Real WeChat: set transport = "service" with a token and endpoint in config.toml.',
        ]
    for reason in (failed or {}).values():
        lines.append(f"NOT RUNNING: {reason}  (retrying; its scheduled messages wait until it connects)")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


async def start_web(
    bot: SalesBot, config: Config, host: str, port: int
) -> tuple[web.AppRunner, str, str, str]:
    """The web UI: its runner, URL, a banner note about the token, and the token if it was generated
    for a non-loopback address (the operator needs it; :func:`generated_token_note` tells where)."""
    from aiohttp import web

    from bot.web.app import create_app, is_loopback, resolve_token

    token = resolve_token(config)
    add_secret(token)
    reads_need_token = not is_loopback(host)
    simulator = None
    for account in config.accounts:
        puppet = getattr(bot.transports.get(account.id), "local_puppet", None)
        if (
            account.transport == "local"
            and isinstance(puppet, LocalPuppet)
            and isinstance(bot.clock, OffsetClock)
        ):
            from bot.web.simulator import SimulatorState

            simulator = SimulatorState(bot, bot.clock, account.id, puppet)
            # the restarted puppet knows its simulated customers again before the first dispatch
            # (a broadcast or countdown due at startup must not fail as "unknown conversation")
            await simulator.ready()
            break
    app = create_app(
        bot.reports,
        token=token,
        token_for_reads=reads_need_token,
        simulator=simulator,
        ready=bot.readiness,
    )
    # requests still open at a stop get this long (aiohttp's default, 60 s, held Ctrl-C up)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=WEB_SHUTDOWN_SECONDS)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SalesbotError(
            f"web: cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "choose another with --port or [web] port in config, or set [web] enabled = false"
        ) from None
    bound = runner.addresses[0][1] if runner.addresses else port
    note, generated = "", ""
    if reads_need_token and not (config.web.token or os.environ.get("SALESBOT_WEB_TOKEN")):
        generated = token
    elif reads_need_token:
        note = "listening beyond loopback: every request needs the access token"
    if reads_need_token:
        log.info("web: open %s on a phone or another computer and sign in", phone_url(host, bound))
    else:
        log.info("web: dashboard at http://%s:%s/dashboard", host, bound)
    return runner, f"http://{host}:{bound}", note, generated


class Runtime:
    """The bot on real time: accounts logged in, the dispatcher woken by timers and plans, the web
    UI. ``salesbot run`` and the gateway end-to-end tests both use it."""

    def __init__(
        self,
        config: Config,
        *,
        host: str | None = None,
        port: int | None = None,
        accounts: Collection[str] | None = None,
    ) -> None:
        self.config = config
        # real time; the simulator may move the bot's clock ahead, never the leases'
        self.bot = SalesBot(config, OffsetClock(), accounts=accounts, cluster_clock=SystemClock())
        self.timers = Timers(config.tz)
        self.web_runner: web.AppRunner | None = None
        self.url = ""
        self.phone_url = ""  # the login page for other devices, when listening beyond loopback
        self.token_note = ""
        self.generated_token = ""  # a generated web token the operator must be shown (see run)
        add_secret(database_password(config.database.url))
        self._host = host or config.web.host
        self._port = config.web.port if port is None else port
        self._dispatching: set[asyncio.Task[object]] = set()
        self._dispatch_again = False  # a wake-up came while a dispatch ran
        # set when this process must stop on its own (another took its SQLite file over)
        self.must_stop = asyncio.Event()
        self.stop_reason = ""
        self._stopping = False
        if config.dispatch.gather_ms > 0:
            self.bot.gathered = GatheredSends(self._send_gathered, config.dispatch.gather_ms / 1000)
        self.bot.hooks.on(Planned, self._wake)

    async def _send_gathered(self, rows: frozenset[int]) -> None:
        """A gathered round: a few named rows, which a stop sends too (a round that began before
        it goes on) rather than leave them to the next start."""
        await self.bot.send_at_once(rows, renew=not self._stopping, despite_stop=True)

    def _wake(self, planned: Planned) -> None:
        """Dispatch when ``planned`` falls due. The due time is the bot's clock, ahead of real time
        after the simulator's fast-forward; the timers run on real time."""
        when = datetime.now(UTC) + (planned.due - self.bot.clock.now())
        self.timers.at(DISPATCH_WAKE, when, self.dispatch, overlapping=True)

    async def dispatch(self) -> None:
        """Send what is due. A timer's wake-up while a dispatch runs starts no second one: that
        dispatch goes round once more when it is done, so rows planned after its last look wait
        for no poll (unless the round fails: then the next poll). APScheduler lets these jobs
        overlap for this; its own skip logged a warning."""
        if self._dispatching:
            self._dispatch_again = True
            return
        task = asyncio.current_task()
        assert task is not None  # always called from a task (APScheduler's job or start())
        self._dispatching.add(task)
        try:
            self._dispatch_again = True
            while self._dispatch_again and not self.bot.dispatcher.stopping:
                self._dispatch_again = False
                await self.bot.run_due()
        except asyncio.CancelledError:
            if not self.bot.dispatcher.stopping:
                raise
            # stop() cut it short after the grace period: said once here, not as the scheduler's
            # traceback; what it had not sent stays planned (recovery settles a send in doubt)
            log.info("the running dispatch was stopped with the process; unsent messages stay planned")
        finally:
            self._dispatching.discard(task)

    async def start(self) -> None:
        """Serve the web UI, log in, start the timers and send what is due. Raises SalesbotError.
        The web UI comes first: an account that logs in by QR code shows its code there."""
        await self.bot.prepare(migrate_apart=True)  # alembic in a child: none of it kept here
        if self.config.web.enabled:
            self.web_runner, self.url, self.token_note, self.generated_token = await start_web(
                self.bot, self.config, self._host, self._port
            )
            from bot.web.app import is_loopback

            if not is_loopback(self._host):
                self.phone_url = phone_url(self._host, int(self.url.rsplit(":", 1)[1]))
        await self.bot.log_in()
        self.timers.every(DISPATCH_POLL, self.config.dispatch.poll_seconds, self.dispatch, overlapping=True)
        self.timers.every(CLUSTER_HEARTBEAT, self.config.cluster.lease_seconds / 3, self.heartbeat)
        for supervisor in self.config.supervisors:  # the digest row is due then; this wakes the dispatcher
            self.timers.daily(f"digest:{supervisor.name}", supervisor.at, self.dispatch, overlapping=True)
        # the lifecycle sweep runs before a dispatch once its time has come (the poll also finds it)
        self.timers.daily("lifecycle:sweep", self.config.lifecycle.sweep_at, self.dispatch, overlapping=True)
        self.timers.start()
        await self.dispatch()

    async def heartbeat(self) -> None:
        """Renew this process's row and leases (a failure is logged: the next one retries, and
        the leases last ``lease_seconds``)."""
        try:
            await self.bot.rebalance()
        except AlreadyRunning as exc:  # SQLite: another process took the file over meanwhile
            self.stop_reason = str(exc)
            self.must_stop.set()
        except Exception:
            log.exception("cluster heartbeat failed; retrying at the next one")

    async def stop(self) -> None:
        """Stop the timers, let a running dispatch finish the message in hand, send what customers'
        messages gathered to send at once (a round of those rows alone), then log out; the
        dispatch and that round share the stop's grace. The timers pause first and shut down
        after the dispatch: shutting APScheduler down cancels the task of every job still running."""
        self.timers.pause()  # the heartbeat too: the grace stays well within a lease (stop_grace)
        self._stopping = True
        self.bot.dispatcher.stopping = True  # a dispatch of every due row claims no more
        sending = set(self._dispatching)
        if self.bot.gathered is not None and (round_ := self.bot.gathered.close()) is not None:
            sending.add(round_)
        if sending:
            grace = stop_grace(self.config.cluster.lease_seconds, shared=self.bot.cluster.shared)
            _, late = await asyncio.wait(sending, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        self.timers.shutdown()
        if self.web_runner is not None:
            await self.web_runner.cleanup()
            self.web_runner = None
        await self.bot.stop()


def stop_grace(lease_seconds: float, *, shared: bool) -> float:
    """How long stopping waits for the message in hand and the gathered round. With leases
    (PostgreSQL, several processes) the paused heartbeat last renewed them at most a third of a
    lease ago: half a lease more keeps the account's lease held until the send ends or is cut
    short."""
    return min(STOP_GRACE_SECONDS, lease_seconds / 2) if shared else STOP_GRACE_SECONDS


async def run(
    config: Config,
    config_path: str,
    host: str | None = None,
    port: int | None = None,
    accounts: Collection[str] | None = None,
) -> None:
    runtime = Runtime(config, host=host, port=port, accounts=accounts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
        note = runtime.token_note
        if runtime.generated_token:
            note = generated_token_note(runtime.generated_token, config_path)
        print(
            banner(
                config,
                config_path,
                runtime.url,
                note,
                runtime.bot.unavailable,
                runtime.bot.cluster.ownership(),
                runtime.phone_url,
            ),
            flush=True,
        )
        stopped = asyncio.create_task(stop.wait())
        superseded = asyncio.create_task(runtime.must_stop.wait())
        await asyncio.wait({stopped, superseded}, return_when=asyncio.FIRST_COMPLETED)
        for waiting in (stopped, superseded):
            waiting.cancel()
        log.info("stopping")
        if runtime.must_stop.is_set():
            raise SalesbotError(runtime.stop_reason)
    finally:
        await runtime.stop()
