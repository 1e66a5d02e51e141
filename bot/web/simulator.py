"""The browser simulator (local transport only): a customer's phone, the rep's console, the card,
live updates over Server-Sent Events, and a fast-forward control for the bot's clock."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from typing import Any

from aiohttp import web

from bot.app import SalesBot
from bot.clock import AdvanceableClock
from bot.domain.display import kind_name
from bot.services.messenger import Sent
from bot.simulate import describe, fast_forward, parse_duration
from bot.transport.local_puppet import LocalPuppet
from bot.web.pages import PAGES
from storage.repositories import Customers

_HANDLE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class SimulatorState:
    def __init__(self, bot: SalesBot, clock: AdvanceableClock, account_id: str, puppet: LocalPuppet) -> None:
        self.bot = bot
        self.clock = clock
        self.account_id = account_id
        self.puppet = puppet
        self.handles: dict[str, str] = {}  # contact id -> handle
        self.listeners: set[asyncio.Queue[dict[str, str] | None]] = set()  # None: the stream ends
        bot.hooks.on(Sent, self._publish)

    def _publish(self, sent: Sent) -> None:
        if sent.account_id != self.account_id:
            return
        event = {
            "at": sent.at.astimezone(self.bot.config.tz).isoformat(),
            "kind": sent.kind,
            "kind_label": kind_name(sent.kind),  # what the page shows: never the internal kind
            "text": sent.text,
            "to": describe(self.bot, self.account_id, sent.conversation_id, self.handles),
        }
        for queue in self.listeners:
            queue.put_nowait(event)

    def mount(self, app: web.Application, token: str) -> None:
        """Add the simulator's page and endpoints to the web app (called by ``create_app``)."""
        mount(app, self, token)

    def contact(self, handle: str) -> str:
        if not _HANDLE.match(handle):
            raise web.HTTPBadRequest(reason="handle: 1-32 letters, digits, '-' or '_'")
        contact_id = f"wx_{handle}"
        self.handles[contact_id] = handle
        return contact_id


STATE = web.AppKey("simulator", SimulatorState)


async def _body(request: web.Request, *fields: str) -> dict[str, str]:
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(reason="expected a JSON object") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(reason="expected a JSON object")
    missing = [f for f in fields if not str(data.get(f, "")).strip()]
    if missing:
        raise web.HTTPBadRequest(reason=f"missing: {', '.join(missing)}")
    return {k: str(v) for k, v in data.items()}


async def _done(state: SimulatorState) -> web.Response:
    await state.bot.settle()
    return web.json_response(
        {"ok": True, "now": state.clock.now().astimezone(state.bot.config.tz).isoformat()}
    )


async def friend_request(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _body(request, "handle", "name")
    state.puppet.request_friendship(state.contact(body["handle"]), body["name"], body.get("hello", ""))
    return await _done(state)


async def say(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _body(request, "handle", "text")
    contact_id = state.contact(body["handle"])
    if not state.puppet.has_contact(contact_id):
        raise web.HTTPBadRequest(reason="add this customer first (friend request)")
    # an explicit message id replays a platform event (what a puppet does after a reconnect)
    state.puppet.customer_says(contact_id, body["text"], body.get("message_id") or None)
    return await _done(state)


async def rep(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _body(request, "text")
    chat = body.get("in_chat", "")
    conversation = state.contact(chat) if chat else state.bot.directory.console_of(state.account_id)
    state.puppet.rep_types(conversation, body["text"])
    return await _done(state)


async def advance(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _body(request, "duration")
    try:
        duration = parse_duration(body["duration"])
    except ValueError as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None
    if duration > timedelta(days=400):
        raise web.HTTPBadRequest(reason="duration: at most 400 days at a time")
    refused = await state.bot.simulated_time.fast_forward_refused()
    if refused is not None:
        return web.json_response({"error": refused.message, "fast_forward": False}, status=409)
    await state.bot.settle()
    before = state.clock.now()
    # marked before the clock moves: a crash midway still leaves the database marked a simulation
    await state.bot.simulated_time.advanced(state.account_id, before, before + duration)
    await fast_forward(state.bot, state.clock, duration)
    return await _done(state)


async def card(request: web.Request) -> web.Response:
    state = request.app[STATE]
    contact_id = state.contact(request.match_info["handle"])
    async with state.bot.db.transaction() as session:
        customer = await Customers(session).by_wechat_id(state.account_id, contact_id)
    if customer is None or customer.id is None:
        raise web.HTTPNotFound(reason="no such customer yet")
    return web.json_response(await state.bot.reports.customer(customer.id))


async def events(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    queue: asyncio.Queue[dict[str, str] | None] = asyncio.Queue()
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


def simulator_page(token: str) -> Any:
    async def page(request: web.Request) -> web.Response:
        state = request.app[STATE]
        refused = await state.bot.simulated_time.fast_forward_refused()
        html = PAGES.get_template("simulator.html.j2").render(
            token=token,
            account=state.account_id,
            fast_forward_off=refused.zh if refused is not None else "",
            now=state.clock.now().astimezone(state.bot.config.tz).isoformat(),
        )
        return web.Response(text=html, content_type="text/html")

    return page


async def _end_streams(app: web.Application) -> None:
    """On shutdown, end every open event stream: an open tab must not hold the server up."""
    for queue in app[STATE].listeners:
        queue.put_nowait(None)


def mount(app: web.Application, state: SimulatorState, token: str) -> None:
    app[STATE] = state
    app.on_shutdown.append(_end_streams)
    app.router.add_get("/simulator", simulator_page(token))
    app.router.add_get("/sim/events", events)
    app.router.add_get("/sim/card/{handle}", card)
    app.router.add_post("/sim/friend_request", friend_request)
    app.router.add_post("/sim/say", say)
    app.router.add_post("/sim/rep", rep)
    app.router.add_post("/sim/advance", advance)
