"""aiohttp application: ``/dashboard`` (HTML, server-side SVG) and ``/api/*`` (JSON).

Security: the app binds to loopback by default. Listening anywhere else requires the access token
on every request, or the session cookie the login page (:mod:`bot.web.login`) trades it for;
mutating requests (any method but GET/HEAD) require either always, and a mutating
request a browser sends from another site (its Origin) is refused. On loopback, a request naming
another host is refused too: a page on a rebound DNS name reaches 127.0.0.1 with its own Host.
Errors are JSON for the API and a short HTML page otherwise, never a stack trace.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from bot.config import Config
from bot.errors import CommandError, SalesbotError
from bot.services.reports import ReportService
from bot.web import dashboard as dashboard_page
from bot.web import login
from bot.web.account_login import login_rows
from bot.web.pages import PAGES

log = logging.getLogger(__name__)

REPORTS = web.AppKey("reports", ReportService)
TOKEN = web.AppKey("token", str)
TOKEN_FOR_READS = web.AppKey("token_for_reads", bool)
Readiness = Callable[[], Awaitable[str]]
READY: web.AppKey[Readiness] = web.AppKey("ready")
# probes for orchestrators: answered without the token, and say nothing but up or not
PROBES = ("/healthz", "/readyz")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Mountable(Protocol):
    """Extra routes the app mounts (the browser simulator): the app knows them only by this."""

    def mount(self, app: web.Application) -> None: ...


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(config: Config) -> str:
    return config.web.token or os.environ.get("SALESBOT_WEB_TOKEN", "") or secrets.token_urlsafe(24)


def _presented_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip()
    return request.query.get("token", "")


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/sim/"))


# what a person opening a page reads for an error (the API keeps its English reason for programs)
PAGE_ERRORS = {
    400: "这个地址里有看不懂的内容，请检查后重试。",
    401: "需要先登录才能查看。",
    403: "没有权限访问这个地址。",
    404: "没有这个页面。",
    405: "这个地址不支持这样访问。",
    413: "提交的内容太大了。",
    429: "请求太频繁，请稍后再试。",
    500: "服务器出了点问题，请稍后再试（详情在服务器日志里）。",
}
NOT_LOOPBACK = "this address only answers as localhost or 127.0.0.1"
NOT_LOOPBACK_PAGE = "这个地址只能用 localhost 或 127.0.0.1 打开。"
CROSS_SITE = "requests from another site are refused"
TOO_MANY_TRIES = "too many wrong access tokens from this address: try again later"
TOO_MANY_TRIES_PAGE = "访问令牌错误次数太多，请过一会儿再试。"
CROSS_SITE_PAGE = "不接受从其他网站发来的操作，请在本站页面上重新操作。"


def _error(request: web.Request, status: int, message: str, page_message: str = "") -> web.Response:
    """JSON with ``message`` for the API and the simulator's calls; otherwise a short page in
    Chinese (``page_message``, else the status's own words)."""
    if _wants_json(request):
        return web.json_response({"error": message}, status=status)
    shown = page_message or PAGE_ERRORS.get(status) or PAGE_ERRORS[400 if status < 500 else 500]
    page = PAGES.get_template("error.html.j2").render(status=status, message=shown)
    return web.Response(text=page, status=status, content_type="text/html")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(request, exc.status, exc.reason or "error")
    except CommandError as exc:  # written for the rep: Chinese already
        return _error(request, 400, str(exc), str(exc))
    except (SalesbotError, ValueError) as exc:  # may be English, name files or kinds: API only
        return _error(request, 400, str(exc))
    except Exception:
        log.exception("web request %s failed", request.path)
        return _error(request, 500, "internal error (see the server log)")


def _hostname(netloc: str) -> str:
    """``host`` of ``host:port`` or ``[::1]:port`` (empty when it cannot be read)."""
    try:
        return urlsplit(f"//{netloc}").hostname or ""
    except ValueError:
        return ""


def _netloc(url: str) -> str:
    try:
        return urlsplit(url).netloc
    except ValueError:
        return ""


def _same_token(presented: str, expected: str) -> bool:
    # compare_digest refuses non-ASCII str; bytes compare anything a client can send
    return hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def _is_page(request: web.Request) -> bool:
    """A page a person opens (not the API, the simulator's calls or a probe)."""
    return request.method in ("GET", "HEAD") and not _wants_json(request) and request.path not in PROBES


def _without_token(request: web.Request) -> str:
    query = request.url.query.copy()
    query.popall("token", None)
    return str(request.rel_url.with_query(query))


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PROBES and request.method in ("GET", "HEAD"):
        return await handler(request)
    mutating = request.method not in ("GET", "HEAD")
    beyond_loopback = request.app[TOKEN_FOR_READS]
    if not beyond_loopback and not is_loopback(_hostname(request.host)):
        return _error(request, 403, NOT_LOOPBACK, NOT_LOOPBACK_PAGE)
    origin = request.headers.get("Origin")
    same_site = origin is not None and _netloc(origin) == request.host
    if mutating and origin is not None and not same_site:
        return _error(request, 403, CROSS_SITE, CROSS_SITE_PAGE)
    signed_in = login.SESSIONS in request.app and request.app[login.SESSIONS].valid(
        request.cookies.get(login.COOKIE)
    )
    request[login.SIGNED_IN] = signed_in
    if request.path in (login.LOGIN_PATH, login.LOGOUT_PATH):
        return await handler(request)  # they check what they need themselves
    presented = _presented_token(request)
    counted = presented and (beyond_loopback or mutating)  # where a wrong token is refused
    attempts = request.app.get(login.ATTEMPTS)
    client = login.client_address(request)
    if counted and attempts is not None and attempts.wait_seconds(client):
        # the login page's limit, for tokens sent in a header or the address too
        return _error(request, 429, TOO_MANY_TRIES, TOO_MANY_TRIES_PAGE)
    if presented and _same_token(presented, request.app[TOKEN]):
        if beyond_loopback and _is_page(request) and "token" in request.query:
            # trade the token in the address for a session: links and history no longer carry it
            response = login.see_other(_without_token(request))
            login.set_session_cookie(request, response, request.app[login.SESSIONS].open())
            return response
        return await handler(request)
    if counted and attempts is not None:
        attempts.failed(client)
        log.warning("web: a wrong access token was sent to %s (from %s)", request.path, client)
    # a session counts for a mutation only from this site's own pages (a browser names its Origin)
    if signed_in and (not mutating or same_site):
        return await handler(request)
    if not (mutating or beyond_loopback):
        return await handler(request)
    if beyond_loopback and _is_page(request):
        return login.see_other(login.login_url(_without_token(request)))
    return _error(request, 401, "access token required")


@web.middleware
async def flushed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What a page or the API shows is on the disk before it goes out: the bot's last group
    commits (a customer's message, storage/group_commit.py) are flushed after the handler read
    them, so nothing anyone saw here is lost to a machine's crash. A response its handler
    streams (the simulator's events) went out already and is not covered; a disk that fails the
    flush was logged where it failed."""
    response = await handler(request)
    db = request.app[REPORTS].db
    read = request.method in ("GET", "HEAD") and request.path not in PROBES  # probes show no data
    if read and not response.prepared and db.owes_flush():
        with contextlib.suppress(OSError):
            await db.flush_group_commits()
    return response


def _int(request: web.Request, name: str, default: int, low: int = 0, high: int = 10_000) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise web.HTTPBadRequest(reason=f"{name}: expected a whole number from {low} to {high}")
    return int(raw)


def _filters(request: web.Request) -> dict[str, Any]:
    for name in ("stage", "tag", "account"):
        if dashboard_page.has_control(request.query.get(name, "")):
            raise web.HTTPBadRequest(reason=f"{name}: control characters are not allowed")
    return {
        "stage": request.query.get("stage", ""),
        "tag": request.query.get("tag", ""),
        "account": request.query.get("account", ""),
        "silent_days": _int(request, "silent_days", 0, 0, 3650),
        "limit": _int(request, "limit", 50, 1, 500),
        "offset": _int(request, "offset", 0, 0, 10_000_000),
    }


def _day(request: web.Request) -> date | None:
    raw = request.query.get("date", "")
    try:
        day = date.fromisoformat(raw) if raw else None
    except ValueError:
        raise web.HTTPBadRequest(reason="date: expected YYYY-MM-DD") from None
    if day is not None and not dashboard_page.in_range(day):
        first, last = dashboard_page.FIRST_DAY, dashboard_page.LAST_DAY
        raise web.HTTPBadRequest(reason=f"date: expected a day from {first} to {last}")
    return day


async def api_customers(request: web.Request) -> web.Response:
    return web.json_response(await request.app[REPORTS].customers(**_filters(request)))


async def api_customer(request: web.Request) -> web.Response:
    raw = request.match_info["customer_id"]
    if not raw.isdigit():
        raise web.HTTPNotFound(reason="no such customer")
    try:
        return web.json_response(await request.app[REPORTS].customer(int(raw)))
    except CommandError:
        raise web.HTTPNotFound(reason="no such customer") from None


async def api_scheduled(request: web.Request) -> web.Response:
    status = request.query.get("status", "pending")
    if status not in ("pending", "failed", "expired", "sent", "cancelled", "paused"):
        raise web.HTTPBadRequest(reason="status: pending, failed, expired, sent, cancelled or paused")
    return web.json_response(
        await request.app[REPORTS].scheduled(status, _int(request, "limit", 100, 1, 1000))
    )


async def api_metrics(request: web.Request) -> web.Response:
    return web.json_response(await request.app[REPORTS].metrics(_day(request)))


async def api_accounts(request: web.Request) -> web.Response:
    return web.json_response(request.app[REPORTS].accounts())


async def api_logins(request: web.Request) -> web.Response:
    """Accounts' QR login states (the dashboard polls it to reload when one changes)."""
    return web.json_response(request.app[REPORTS].login_states())


async def api_cluster(request: web.Request) -> web.Response:
    return web.json_response(await request.app[REPORTS].cluster())


async def dashboard(request: web.Request) -> web.Response:
    reports = request.app[REPORTS]
    page, status = await dashboard_page.render(
        reports, request.query, signed_in=bool(request.get(login.SIGNED_IN)), logins=login_rows(reports)
    )
    return web.Response(text=page, status=status, content_type="text/html")


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving (a liveness probe)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The database answers and this process owns an account or has nothing to own."""
    reason = await request.app[READY]()
    if reason:
        return web.json_response({"status": "not ready", "reason": reason}, status=503)
    return web.json_response({"status": "ready"})


async def _always_ready() -> str:
    return ""


async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/dashboard")


# every response: no other site may frame a page (a framed simulator or logout button could be
# clicked by a trick), and no address (a loopback ?token= link) leaks to another site in a Referer
# (same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on the site's own
# form posts, which the cross-site check refuses)
SAFETY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


async def _safety_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SAFETY_HEADERS.items():
        response.headers.setdefault(name, value)


def create_app(
    reports: ReportService,
    *,
    token: str,
    token_for_reads: bool,
    simulator: Mountable | None = None,
    ready: Callable[[], Awaitable[str]] | None = None,
    now: Callable[[], float] = time.monotonic,
) -> web.Application:
    """``ready`` answers ``/readyz`` ("" or why not). ``simulator`` (a
    :class:`bot.web.simulator.SimulatorState`) mounts the browser simulator; only
    for the local transport. The app mounts it; the simulator never imports the app. ``now``
    (monotonic seconds) times sessions and login attempts."""
    app = web.Application(middlewares=[errors, auth, flushed])
    app.on_response_prepare.append(_safety_headers)
    app[REPORTS] = reports
    app[TOKEN] = token
    app[TOKEN_FOR_READS] = token_for_reads
    app[READY] = ready or _always_ready
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/dashboard", dashboard)
    app.router.add_get("/api/customers", api_customers)
    app.router.add_get("/api/customers/{customer_id}", api_customer)
    app.router.add_get("/api/scheduled", api_scheduled)
    app.router.add_get("/api/metrics", api_metrics)
    app.router.add_get("/api/accounts", api_accounts)
    app.router.add_get("/api/cluster", api_cluster)
    app.router.add_get("/api/logins", api_logins)
    login.mount(app, lambda presented: _same_token(presented, token), now=now)
    if simulator is not None:
        # the page's calls ride on the session cookie (set by the page on loopback, by the login
        # beyond it), so the token is never written into it
        simulator.mount(app)
    return app
