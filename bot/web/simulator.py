"""The browser simulator (local transport only): a customer's phone, the rep's console, the card,
live updates over Server-Sent Events, and a fast-forward control for the bot's clock.

The server issues contact handles and keeps the simulated phone's customers and both chat
histories in the database (``storage/queries/simulator.py``), so a reload, a second tab or a
restart on the same database shows the same state. What a person reads here is Chinese: error
reasons, labels and times (never an internal kind or an ISO ``T``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app import SalesBot
from bot.clock import AdvanceableClock
from bot.domain.display import kind_name
from bot.domain.limits import clip
from bot.services.messenger import Sent
from bot.simulate import MAX_ADVANCE, describe, fast_forward, parse_duration
from bot.transport.local_puppet import LocalPuppet
from bot.web import login
from bot.web.pages import PAGES
from storage.models import Event
from storage.queries.simulator import (
    SIM_FRIEND,
    SIM_LINE,
    customer_ids,
    delivered_to,
    last_outgoing_id,
    simulator_events,
)
from storage.repositories import Customers, Events

_HANDLE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_TEXT = 2000  # characters kept of one typed line (a chat message is far shorter)
MAX_NAME = 32
HISTORY = 1000  # bot messages a page loads (the newest)
FIELDS = {"name": "客户名字", "text": "要发送的内容", "duration": "快进时长"}
Line = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class SimContact:
    handle: str
    name: str
    contact_id: str


class SimulatorState:
    """The simulated phone (its customers by handle) and the live streams of the open tabs; what
    the page shows is read back from the database, so every tab and a reload agree."""

    def __init__(self, bot: SalesBot, clock: AdvanceableClock, account_id: str, puppet: LocalPuppet) -> None:
        self.bot = bot
        self.clock = clock
        self.account_id = account_id
        self.puppet = puppet
        self.contacts: dict[str, SimContact] = {}  # handle -> contact, in the order they were added
        self.handles: dict[str, str] = {}  # contact id -> handle
        self.listeners: set[asyncio.Queue[Line | None]] = set()  # None: the stream ends
        self.lock = asyncio.Lock()  # one change of the transcript at a time (two tabs adding friends)
        # one action at a time, in arrival order: a fast-forward clicked while a friend request is
        # under way waits for it (else the clock moved first and the welcome came a minute late)
        self.actions = asyncio.Lock()
        self._loaded = False
        self._seq = itertools.count(1)
        self.seq = 0  # the last live event's number: a page drops what its snapshot already holds
        bot.hooks.on(Sent, self._on_sent)

    def mount(self, app: web.Application) -> None:
        """Add the simulator's page and endpoints to the web app (called by ``create_app``)."""
        mount(app, self)

    # -- the transcript ---------------------------------------------------------------------------

    async def ready(self) -> None:
        """Load the phone's customers once; a restarted puppet gets them back as its friends."""
        if self._loaded:
            return
        async with self.bot.db.transaction() as session:
            events = await simulator_events(session, self.account_id)
        for event in events:
            if event.kind == SIM_FRIEND:
                self._register(SimContact(event.data["handle"], event.data["name"], event.data["contact_id"]))
        for contact in self.contacts.values():
            if not self.puppet.has_contact(contact.contact_id):
                self.puppet.add_contact(contact.contact_id, contact.name, friend=True)
        self._loaded = True

    async def _taken(self, session: AsyncSession, handle: str) -> bool:
        contact_id = f"wx_{handle}"
        if handle in self.contacts or self.puppet.has_contact(contact_id):
            return True
        return bool(await customer_ids(session, self.account_id, [contact_id]))

    def _register(self, contact: SimContact) -> None:
        self.contacts[contact.handle] = contact
        self.handles[contact.contact_id] = contact.handle

    async def add_friend(self, name: str, hello: str, handle: str = "") -> SimContact:
        """A new contact for every request, even with a name already on the phone. A script may
        name the handle: the same handle and name again is the platform repeating the request."""
        async with self.lock:
            await self.ready()
            known = self.contacts.get(handle)
            if known is not None:
                if known.name != name:
                    raise web.HTTPConflict(
                        reason=f"编号 {handle} 已是另一位客户「{known.name}」：不会改名或合并"
                    )
                return known
            async with self.bot.db.transaction() as session:
                if handle and await self._taken(session, handle):
                    raise web.HTTPConflict(reason=f"编号 {handle} 已有客户：不会改名或合并")
                if not handle:
                    number = len(self.contacts) + 1
                    while await self._taken(session, f"c{number}"):
                        number += 1
                    handle = f"c{number}"
                contact_id = f"wx_{handle}"
                contact = SimContact(handle, name, contact_id)
                event = Event(
                    account_id=self.account_id,
                    kind=SIM_FRIEND,
                    at=self.clock.now(),
                    text=hello,
                    data={
                        "handle": handle,
                        "name": name,
                        "contact_id": contact_id,
                        "hello": hello,
                        "after": await last_outgoing_id(session, self.account_id),
                    },
                )
                event = await Events(session).add(event)
            self._register(contact)
        self._publish({"type": "friend", "handle": handle, "name": name})  # every tab's pickers
        for line in self._lines_of(event):
            self._publish(line)
        return contact

    async def typed(self, pane: str, handle: str, text: str) -> None:
        """Keep a line the customer (phone) or the rep (console) typed, before the bot reads it."""
        async with self.lock, self.bot.db.transaction() as session:
            event = Event(
                account_id=self.account_id,
                kind=SIM_LINE,
                at=self.clock.now(),
                text=text,
                data={
                    "pane": pane,
                    "handle": handle,
                    "after": await last_outgoing_id(session, self.account_id),
                },
            )
            event = await Events(session).add(event)
        for line in self._lines_of(event):
            self._publish(line)

    async def snapshot(self) -> dict[str, Any]:
        """Everything the page shows: customers, both histories, the console's current customer."""
        await self.ready()
        seq = self.seq
        console = self.bot.directory.console_of(self.account_id)
        supervisors = [
            self.bot.directory.contact_of(self.account_id, s.contact)
            for s in self.bot.config.supervisors
            if s.account == self.account_id
        ]
        async with self.bot.db.transaction() as session:
            events = await simulator_events(session, self.account_id)
            sent = await delivered_to(
                session, self.account_id, [console, *supervisors, *self.handles], HISTORY
            )
            ids = await customer_ids(session, self.account_id, list(self.handles))
        merged: list[tuple[tuple[int, int, int], Line]] = []
        for event in events:
            after = int(event.data.get("after", 0))  # placed after what was sent before it
            for line in self._lines_of(event):
                merged.append(((after, 1, event.id or 0), line))
        for row in sent:
            shown = self._line_sent(row.conversation_id, row.kind, row.text, row.sent_at or row.created_at)
            if shown is not None:
                merged.append(((row.id or 0, 0, 0), shown))
        merged.sort(key=lambda item: item[0])
        return {
            "seq": seq,
            "customers": [
                {"handle": c.handle, "name": c.name, "customer_id": ids.get(c.contact_id)}
                for c in self.contacts.values()
            ],
            "lines": [line for _, line in merged],
            **self.status(),
        }

    def status(self) -> dict[str, Any]:
        """The clock and the console's current customer (the page's picker follows commands)."""
        current = self.bot.directory.state(self.account_id).current
        return {"now": self._time(self.clock.now()), "current": current}

    def _time(self, at: datetime) -> str:
        return f"{at.astimezone(self.bot.config.tz):%m-%d %H:%M}"

    def _lines_of(self, event: Event) -> list[Line]:
        at = self._time(event.at)
        if event.kind == SIM_FRIEND:
            handle, name, hello = event.data["handle"], event.data["name"], event.data.get("hello", "")
            return [
                {
                    "pane": "phone",
                    "handle": handle,
                    "mine": True,
                    "label": "好友申请",
                    "kind": "",
                    "at": at,
                    "text": hello or "（请求添加你为朋友）",
                },
                {
                    "pane": "console",
                    "handle": handle,
                    "mine": False,
                    "label": "模拟器提示",
                    "kind": "",
                    "at": at,
                    "text": f"新好友：{name}" + (f"（验证消息：{hello}）" if hello else ""),
                },
            ]
        pane = event.data.get("pane", "console")
        return [
            {
                "pane": pane,
                "handle": event.data.get("handle", ""),
                "mine": True,
                "label": "客户" if pane == "phone" else "我",
                "kind": "",
                "at": at,
                "text": event.text,
            }
        ]

    def _line_sent(self, conversation_id: str, kind: str, text: str, at: datetime) -> Line | None:
        to = describe(self.bot, self.account_id, conversation_id, self.handles)
        line: Line = {
            "mine": False,
            "kind": kind,
            "label": kind_name(kind),
            "at": self._time(at),
            "text": text,
        }
        if to == "console":
            return {**line, "pane": "console", "handle": ""}
        if to.startswith("supervisor:"):
            label = f"{line['label']} → 主管 {to.removeprefix('supervisor:')}"
            return {**line, "pane": "console", "handle": "", "label": label}
        if to in self.contacts:
            return {**line, "pane": "phone", "handle": to}
        return None

    def _on_sent(self, sent: Sent) -> None:
        if sent.account_id != self.account_id:
            return
        line = self._line_sent(sent.conversation_id, sent.kind, sent.text, sent.at)
        if line is not None:
            self._publish(line)

    def _publish(self, event: Line) -> None:
        self.seq = next(self._seq)
        payload = {"type": "line", **event, "seq": self.seq, **self.status()}
        for queue in self.listeners:
            queue.put_nowait(payload)

    def contact(self, handle: str) -> SimContact:
        found = self.contacts.get(handle)
        if found is None:
            raise web.HTTPBadRequest(reason="请先在手机上加这位客户为好友")
        return found


STATE = web.AppKey("simulator", SimulatorState)


async def _body(request: web.Request, *fields: str) -> dict[str, str]:
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(reason="请求格式不对（应为 JSON 对象）") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(reason="请求格式不对（应为 JSON 对象）")
    missing = [f for f in fields if not str(data.get(f) or "").strip()]
    if missing:
        raise web.HTTPBadRequest(reason="请填写" + "、".join(FIELDS.get(f, f) for f in missing))
    return {k: str(v).strip() for k, v in data.items() if v is not None}


def _one_at_a_time(handler: Handler) -> Handler:
    async def serialised(request: web.Request) -> web.StreamResponse:
        async with request.app[STATE].actions:
            return await handler(request)

    return serialised


async def _done(state: SimulatorState, **extra: Any) -> web.Response:
    await state.bot.settle()
    return web.json_response({"ok": True, **extra, **state.status()})


async def friend_request(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _body(request, "name")
    hello = body.get("hello", "")[:MAX_TEXT]
    handle = body.get("handle", "")  # scripts and tests may name it; the page never does
    if handle and not _HANDLE.match(handle):
        raise web.HTTPBadRequest(reason="客户编号只能用字母、数字、- 和 _（最多 32 个）")
    contact = await state.add_friend(clip(body["name"], MAX_NAME), hello, handle)
    state.puppet.request_friendship(contact.contact_id, contact.name, hello)
    return await _done(state, handle=contact.handle)


async def say(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _body(request, "handle", "text")
    await state.ready()
    contact = state.contact(body["handle"])
    text = body["text"][:MAX_TEXT]
    await state.typed("phone", contact.handle, text)
    # an explicit message id replays a platform event (what a puppet does after a reconnect)
    state.puppet.customer_says(contact.contact_id, text, body.get("message_id") or None)
    return await _done(state)


async def rep(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _body(request, "text")
    await state.ready()
    chat = body.get("in_chat", "")
    conversation = (
        state.contact(chat).contact_id if chat else state.bot.directory.console_of(state.account_id)
    )
    text = body["text"][:MAX_TEXT]
    if not chat:
        await state.typed("console", "", text)
    state.puppet.rep_types(conversation, text)
    return await _done(state)


async def current(request: web.Request) -> web.Response:
    """The console's picker: who "this customer" is for a command that names nobody."""
    state = request.app[STATE]
    body = await _body(request)
    await state.ready()
    handle = body.get("handle", "")
    customer_id = None
    if handle:
        contact = state.contact(handle)
        async with state.bot.db.transaction() as session:
            customer = await Customers(session).by_wechat_id(state.account_id, contact.contact_id)
        if customer is None:
            raise web.HTTPBadRequest(reason="这位客户还没加上好友，请稍等或快进一分钟")
        customer_id = customer.id
    state.bot.directory.state(state.account_id).current = customer_id
    return await _done(state)


async def advance(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _body(request, "duration")
    try:
        duration = parse_duration(body["duration"])
    except ValueError:
        raise web.HTTPBadRequest(
            reason=f"快进时长不对：例如 30s、15m、2h、3d，一次最多 {MAX_ADVANCE.days} 天"
        ) from None
    refused = await state.bot.simulated_time.fast_forward_refused()
    if refused is not None:
        return web.json_response({"error": refused.zh, "fast_forward": False}, status=409)
    await state.bot.settle()
    before = state.clock.now()
    # marked before the clock moves: a crash midway still leaves the database marked a simulation
    await state.bot.simulated_time.advanced(state.account_id, before, before + duration)
    await fast_forward(state.bot, state.clock, duration)
    return await _done(state)


async def card(request: web.Request) -> web.Response:
    state = request.app[STATE]
    await state.ready()
    contact = state.contacts.get(request.match_info["handle"])
    customer = None
    if contact is not None:
        async with state.bot.db.transaction() as session:
            customer = await Customers(session).by_wechat_id(state.account_id, contact.contact_id)
    if customer is None or customer.id is None:
        raise web.HTTPNotFound(reason="还没有这位客户")
    return web.json_response(await state.bot.reports.customer(customer.id))


async def snapshot(request: web.Request) -> web.Response:
    return web.json_response(await request.app[STATE].snapshot())


async def events(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    await state.ready()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    queue: asyncio.Queue[Line | None] = asyncio.Queue()
    state.listeners.add(queue)
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=15)
                if event is None:
                    break
                await response.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        state.listeners.discard(queue)
    return response


def simulator_page() -> Any:
    async def page(request: web.Request) -> web.Response:
        state = request.app[STATE]
        refused = await state.bot.simulated_time.fast_forward_refused()
        html = PAGES.get_template("simulator.html.j2").render(
            account=state.account_id,
            fast_forward_off=refused.zh if refused is not None else "",
            now=state.status()["now"],
        )
        response = web.Response(text=html, content_type="text/html")
        if not request.get(login.SIGNED_IN) and login.SESSIONS in request.app:
            # on loopback the page is open to this machine: its calls ride on a session cookie,
            # so the token is never written into the page (beyond loopback a login comes first)
            login.set_session_cookie(request, response, request.app[login.SESSIONS].open())
        return response

    return page


async def _end_streams(app: web.Application) -> None:
    """On shutdown, end every open event stream: an open tab must not hold the server up."""
    for queue in app[STATE].listeners:
        queue.put_nowait(None)


def mount(app: web.Application, state: SimulatorState) -> None:
    app[STATE] = state
    app.on_shutdown.append(_end_streams)
    app.router.add_get("/simulator", simulator_page())
    app.router.add_get("/sim/events", events)
    app.router.add_get("/sim/state", snapshot)
    app.router.add_get("/sim/card/{handle}", card)
    app.router.add_post("/sim/friend_request", _one_at_a_time(friend_request))
    app.router.add_post("/sim/say", _one_at_a_time(say))
    app.router.add_post("/sim/rep", _one_at_a_time(rep))
    app.router.add_post("/sim/current", _one_at_a_time(current))
    app.router.add_post("/sim/advance", _one_at_a_time(advance))
