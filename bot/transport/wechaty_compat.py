"""Every compatibility shim that python-wechaty 0.10.7 needs, in one place.

Import Wechaty names from here, never from ``wechaty`` directly, so the shims are applied first:

* Python 3.11 rejects ``WechatyOptions.puppet_options = PuppetOptions()`` as a mutable dataclass
  default unless ``PuppetOptions`` is hashable. After making it hashable every ``WechatyOptions``
  shares that one default instance, so :func:`new_wechaty_options` always passes a fresh one.
* ``wechaty`` creates a ``.wechaty`` cache folder in the current directory at import time; we point
  ``CACHE_DIR`` at a temporary folder unless the user chose one. ``WECHATY_LOG`` defaults to warn.
* On login the plugin manager probes port 5000 and starts its own scheduler with an SQLite job
  store; each bot gets a private in-memory scheduler and port 0 instead.
* ``Wechaty.start()`` swallows startup errors: it prints and returns, sleeps 60 s and restarts on
  network errors, and on a puppet error calls ``loop.stop()``, killing the whole process.
  :class:`IsolatedWechaty` runs the same steps and lets errors propagate to the caller.
* ``Contact``/``Tag``/``Room``/``Message`` pools are class attributes shared by the per-bot
  subclasses, so two bots in one process would hand each other contacts bound to the wrong
  puppet. :class:`IsolatedWechaty` gives every bot its own pools.
* The service puppet's channel never pings and its start telnets the endpoint on the event loop;
  :class:`KeepaliveServicePuppet` sets up the channel itself (keepalive pings, no blocking check)
  and tracks its event handlers (:class:`TrackingEmitter`) so a stop can let them finish.
* ``PuppetService.__init__`` logs the token in a warning ("there are endpoint<...> and token<...>")
  on every start, and the token travels as the HTTP/2 ``:authority``. The constructor's warnings are
  silenced, and every token given to :func:`new_service_puppet` or :func:`new_wechaty_options` is
  registered with :mod:`bot.redaction`, which removes it from every log record in the process
  (the library's loggers have their own handlers and do not propagate, so a handler filter would
  miss them; the redaction runs in the record factory).
* On a ``scan`` event Wechaty prints the QR code to stdout itself, unnamed and again for every
  code; salesbot prints it once per code with the account it logs in (:mod:`bot.services.logins`)
  and shows it on the dashboard, so the library's printer is silenced. Its bridge then hands the
  event to the plugin manager, which asserts the status is a ``str`` (it is a ``ScanStatus``) and
  fails on every scan event; salesbot uses no plugins, so scan events skip the plugin manager.
* ``Contact.ready(force_sync=True)`` refetches the payload, but the puppet service answers from its
  own cache, and ``Friendship.accept()`` never refreshes the contact (Node's Wechaty syncs it), so a
  new friend keeps the stranger's payload. :func:`sync_contact` marks the payload dirty first.
* ``Contact.say`` / ``Room.say`` test ``isinstance(message, MiniProgram)`` without importing
  ``MiniProgram`` (a NameError); :func:`say_mini_program` hands the card to the puppet as ``say`` would.
* Two packages python-wechaty imports cost memory salesbot never uses (issue 20), so unless each is
  loaded already, :func:`_stand_ins` answers its imports with stand-ins that refuse use:

  - PyGithub (about 14 MB with the crypto and JWT libraries it pulls in): ``wechaty.user.url_link``
    imports it for a parser that makes link cards out of GitHub issues; salesbot builds its cards
    from their fields.
  - Quart (about 10 MB with Flask, Werkzeug and Hypercorn): the plugin manager builds a Quart app
    for the plugins' web pages and serves it only when a plugin adds a route. salesbot uses no
    plugins, so its app is a stand-in with no routes, and the manager never starts a server.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from typing import Any

os.environ.setdefault("CACHE_DIR", os.path.join(tempfile.gettempdir(), "salesbot-wechaty-cache"))
# wechaty logs every event at INFO on its own handlers; salesbot logs one line per event itself
os.environ.setdefault("WECHATY_LOG", "warn")

from wechaty_puppet.schemas.puppet import PuppetOptions

PuppetOptions.__hash__ = object.__hash__

import logging  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

# what python-wechaty imports from packages salesbot never uses, by package and module
_UNUSED: dict[str, dict[str, tuple[str, ...]]] = {
    # wechaty.user.url_link: link cards made from GitHub issues
    "github": {
        "github": ("Github",),
        "github.Repository": ("Repository",),
        "github.PullRequest": ("PullRequest",),
        "github.PullRequestComment": ("PullRequestComment",),
        "github.Issue": ("Issue",),
        "github.IssueComment": ("IssueComment",),
    },
    # wechaty.plugin and wechaty.schema: the plugins' web server
    "quart": {"quart": ("Quart", "request", "send_file", "Response", "jsonify")},
    "quart_cors": {"quart_cors": ("cors",)},
}
_NO_QUART = "salesbot does not load Quart: Wechaty plugins' web pages are not supported"
_WHY = {
    "github": "salesbot does not load PyGithub: link cards from GitHub URLs are not supported",
    "quart": _NO_QUART,
    "quart_cors": _NO_QUART,
}


class _NotLoaded:
    """A class of a package salesbot left out: using it is a programming error, said plainly."""

    why = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(self.why)


class _NoRules:
    def iter_rules(self) -> list[Any]:
        return []


class _PluginServer:
    """Stands in for the Quart app each ``WechatyPluginManager`` builds: it has no routes, so the
    manager never starts a web server; adding a route (a plugin's ``blueprint``) is refused."""

    url_map = _NoRules()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # hasattr(), copy and pickle ask for these: "no such attribute"
            raise AttributeError(name)
        raise RuntimeError(_NO_QUART)


def _cors(app: Any, *args: Any, **kwargs: Any) -> Any:
    return app


# the names Wechaty uses as it builds every bot (the others are used only by features it offers and
# salesbot does not: they refuse use)
_WORKING = {"quart.Quart": _PluginServer, "quart_cors.cors": _cors}


def _stand_ins() -> list[str]:
    """Stand-ins for the packages python-wechaty imports but salesbot never uses (see the module's
    docstring), each unless that package is loaded already. Returns the modules it stood in for:
    they leave ``sys.modules`` once Wechaty is imported, so a later import is real."""
    stood_in: list[str] = []
    for package, modules in _UNUSED.items():
        if package in sys.modules:
            continue
        for name, classes in modules.items():
            module = types.ModuleType(name, f"stand-in: {_WHY[package]}")
            module.__dict__["SALESBOT_STAND_IN"] = True
            if name == package:
                module.__path__ = []
            for cls in classes:
                refusing = type(cls, (_NotLoaded,), {"__module__": name, "why": _WHY[package]})
                module.__dict__[cls] = _WORKING.get(f"{name}.{cls}", refusing)
            sys.modules[name] = module
            stood_in.append(name)
    return stood_in


_STOOD_IN = _stand_ins()
try:
    import wechaty.wechaty
finally:  # the Wechaty modules hold the stand-ins they need; a later import is the real one
    for _name in _STOOD_IN:
        del sys.modules[_name]

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # noqa: E402
from grpclib.client import Channel  # noqa: E402
from grpclib.config import Configuration  # noqa: E402
from pyee import AsyncIOEventEmitter  # noqa: E402
from wechaty import UrlLink, Wechaty, WechatyOptions  # noqa: E402
from wechaty.plugin import WechatyPluginManager  # noqa: E402
from wechaty_grpc.wechaty import PuppetStub  # noqa: E402
from wechaty_puppet import Puppet  # noqa: E402
from wechaty_puppet_service import PuppetService  # noqa: E402
from wechaty_puppet_service.utils import extract_host_and_port  # noqa: E402

from bot import redaction  # noqa: E402

# "no blueprint registered, so no web service": expected, we never use Wechaty's plugin web server
logging.getLogger("wechaty.plugin").setLevel(logging.ERROR)
# "set payload more than once": expected, the adapter refreshes contact payloads on purpose
logging.getLogger("Accessory").setLevel(logging.ERROR)
# "mimeType will be deprecated": the library warns about its own attribute on every file sent
logging.getLogger("FileBox").setLevel(logging.ERROR)
redaction.install()
wechaty.wechaty.qr_terminal = lambda *args, **kwargs: None  # salesbot shows the code itself
_emit_to_plugins = WechatyPluginManager.emit_events


async def _emit_but_scan(self: Any, event_name: str, *args: Any, **kwargs: Any) -> None:
    if event_name != "scan":  # the library's scan branch always fails (see module docstring)
        await _emit_to_plugins(self, event_name, *args, **kwargs)


WechatyPluginManager.emit_events = _emit_but_scan

_POOLED_ACCESSORIES = ("Contact", "ContactSelf", "Room", "Tag", "Favorite")


class IsolatedWechaty(Wechaty):  # type: ignore[misc]
    """A ``Wechaty`` that shares no object pools with other bots and reports startup errors."""

    async def start(self) -> None:
        """The library's start sequence without its error swallowing (see module docstring)."""
        await self.init_puppet()
        await self.init_puppet_event_bridge(self.puppet)
        await self.puppet.start()
        self.started = True

    async def init_puppet(self) -> None:
        await super().init_puppet()
        for name in _POOLED_ACCESSORIES:
            accessory = getattr(self, name, None)
            if accessory is not None and hasattr(accessory, "_pool"):
                accessory._pool = {}


class TrackingEmitter(AsyncIOEventEmitter):  # type: ignore[misc]
    """A puppet's event emitter that keeps the futures of its async listeners, so the handling of
    everything received so far can be awaited (:meth:`drain`): tests settle on it, a stop lets
    it finish instead of cutting it off."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight: set[asyncio.Future[Any]] = set()

    def _emit_run(self, f: Callable[..., Any], args: Any, kwargs: Any) -> None:
        try:
            result = f(*args, **kwargs)
        except Exception as exc:  # as pyee does: a failing listener must not break the emitter
            self.emit("error", exc)
            return
        if asyncio.iscoroutine(result):
            future = asyncio.ensure_future(result)
            self.in_flight.add(future)
            future.add_done_callback(self._finished)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self.in_flight.discard(future)
        if not future.cancelled() and future.exception() is not None:
            self.emit("error", future.exception())

    async def drain(self) -> None:
        """Wait until every listener started so far (and those they started) is done."""
        while self.in_flight:
            await asyncio.gather(*list(self.in_flight), return_exceptions=True)
            await asyncio.sleep(0)


class KeepaliveServicePuppet(PuppetService):  # type: ignore[misc]
    """The gRPC service puppet, with our own channel setup:

    * HTTP/2 keepalive pings. The library's channel never pings, so a connection that dies silently
      (a frozen gateway, a NAT dropping an idle flow) leaves the event stream waiting forever. With
      pings, an unanswered ping closes the connection, the stream ends and the adapter reconnects.
    * No blocking reachability check: the library telnets the endpoint on the event loop (up to
      3 s per try); the adapter probes it asynchronously before starting instead.
    * Always the configured endpoint (never the public discovery service)."""

    def __init__(self, options: PuppetOptions, keepalive_seconds: float) -> None:
        redaction.add_secret(options.token)
        # its constructor warns "there are endpoint<...> and token<...>" (the token in clear text)
        # whenever both are given, which is always; nothing else it logs there is news to us
        library_log = logging.getLogger("PuppetService")
        was_disabled, library_log.disabled = library_log.disabled, True
        try:
            super().__init__(options)
        finally:
            library_log.disabled = was_disabled
        self.keepalive_seconds = keepalive_seconds
        self._event_stream = TrackingEmitter()

    def _init_puppet(self) -> None:
        host, port = extract_host_and_port(self.options.end_point)
        pings = (
            Configuration(
                _keepalive_time=self.keepalive_seconds,
                _keepalive_timeout=self.keepalive_seconds,
                _keepalive_permit_without_calls=True,
                _http2_max_pings_without_data=0,  # the event stream only receives: ping anyway
                _http2_min_sent_ping_interval_without_data=self.keepalive_seconds,
            )
            if self.keepalive_seconds
            else None
        )
        self.channel = Channel(host=host, port=port, config=pings)
        self.channel._authority = self.options.token  # the library sends the token this way
        self._puppet_stub = PuppetStub(self.channel)


def new_service_puppet(*, token: str, endpoint: str, keepalive_seconds: float) -> KeepaliveServicePuppet:
    """A fresh service puppet with its own options (never the shared default)."""
    options = PuppetOptions()
    options.token = token
    options.end_point = endpoint
    return KeepaliveServicePuppet(options, keepalive_seconds)


def new_wechaty_options(
    *,
    name: str,
    puppet: Puppet | str,
    token: str | None = None,
    endpoint: str | None = None,
) -> Any:
    """Build ``WechatyOptions`` that share nothing with any other bot in the process."""
    redaction.add_secret(token)
    puppet_options = PuppetOptions()
    puppet_options.token = token
    puppet_options.end_point = endpoint
    return WechatyOptions(
        name=name,
        puppet=puppet,
        puppet_options=puppet_options,
        token=token,
        endpoint=endpoint,
        host="127.0.0.1",
        port=0,  # nothing listens on port 0, so the plugin manager's port probe never fails
        scheduler=AsyncIOScheduler(),  # private, in memory; never the plugin default SQLite file store
    )


__all__ = [
    "IsolatedWechaty",
    "KeepaliveServicePuppet",
    "Puppet",
    "PuppetOptions",
    "TrackingEmitter",
    "UrlLink",
    "Wechaty",
    "WechatyOptions",
    "new_service_puppet",
    "new_wechaty_options",
    "say_mini_program",
]


async def say_mini_program(bot: Any, conversation_id: str, payload: Any) -> str | None:
    """Send a mini-program card (a ``MiniProgramPayload``) the way ``say`` would if it could."""
    message_id = await bot.puppet.message_send_mini_program(
        conversation_id=conversation_id, mini_program=payload
    )
    return str(message_id) if message_id else None


async def sync_contact(bot: Any, contact: Any) -> None:
    """Reload ``contact``'s payload from the puppet itself, past the service's and the pool's caches."""
    await bot.puppet.contact_payload_dirty(contact.contact_id)
    await contact.ready(force_sync=True)
