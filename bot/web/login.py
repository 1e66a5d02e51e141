"""Signing in to the web UI from another device: a login page that trades the access token for a
session cookie, so no link or address bar carries ``?token=`` and the token is typed once.

Sessions are opaque random ids kept in memory (a restart signs everyone out; logout really ends
one). The cookie is HttpOnly, SameSite=Lax, and Secure whenever the page is served over HTTPS
(directly or behind a proxy that says so): browsers drop a Secure cookie on plain HTTP. Wrong
tokens (typed here, or sent to a page or the API beyond loopback, bot/web/app.py) are counted per
client address and refused for a while after a few.
Times come from a monotonic clock: the bot's clock may be fast-forwarded by the simulator.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlencode

from aiohttp import web

from bot.web.pages import PAGES

log = logging.getLogger(__name__)

COOKIE = "salesbot_session"
SESSION_SECONDS = 14 * 24 * 3600
MAX_SESSIONS = 1000
# wrong tokens allowed per client address within the window, then refused until it passes
MAX_FAILURES = 5
FAILURE_WINDOW_SECONDS = 10 * 60
MAX_TRACKED_CLIENTS = 10_000
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
Now = Callable[[], float]


@dataclass
class Sessions:
    """Signed-in browsers: session id -> when it ends (monotonic seconds)."""

    now: Now = time.monotonic
    lifetime: float = SESSION_SECONDS
    _ends: dict[str, float] = field(default_factory=dict)

    def open(self) -> str:
        self._prune()
        if len(self._ends) >= MAX_SESSIONS:  # drop the oldest rather than grow without bound
            del self._ends[min(self._ends, key=self._ends.__getitem__)]
        session = secrets.token_urlsafe(32)
        self._ends[session] = self.now() + self.lifetime
        return session

    def valid(self, session: str | None) -> bool:
        if not session:
            return False
        ends = self._ends.get(session)
        if ends is None:
            return False
        if ends <= self.now():
            del self._ends[session]
            return False
        return True

    def close(self, session: str | None) -> None:
        if session:
            self._ends.pop(session, None)

    def _prune(self) -> None:
        now = self.now()
        for session in [s for s, ends in self._ends.items() if ends <= now]:
            del self._ends[session]


@dataclass
class Attempts:
    """Wrong tokens per client address in a sliding window."""

    now: Now = time.monotonic
    limit: int = MAX_FAILURES
    window: float = FAILURE_WINDOW_SECONDS
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def wait_seconds(self, client: str) -> float:
        """0 when ``client`` may try now; else how long until it may."""
        recent = self._recent(client)
        if len(recent) < self.limit:
            return 0.0
        return max(1.0, recent[0] + self.window - self.now())

    def failed(self, client: str) -> int:
        """Records a wrong token; returns how many tries are left in the window."""
        recent = self._recent(client)
        recent.append(self.now())
        self._failures[client] = recent
        if len(self._failures) > MAX_TRACKED_CLIENTS:  # many addresses: forget the stale ones
            for other in list(self._failures):
                self._recent(other)
        return max(0, self.limit - len(recent))

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def _recent(self, client: str) -> list[float]:
        cutoff = self.now() - self.window
        recent = [at for at in self._failures.get(client, []) if at > cutoff]
        if recent:
            self._failures[client] = recent
        else:
            self._failures.pop(client, None)
        return recent


SESSIONS = web.AppKey("sessions", Sessions)
ATTEMPTS = web.AppKey("login_attempts", Attempts)
# set by the auth middleware on a request that carries a live session cookie
SIGNED_IN = web.RequestKey("signed_in", bool)


def served_over_https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def set_session_cookie(request: web.Request, response: web.StreamResponse, session: str) -> None:
    response.set_cookie(
        COOKIE,
        session,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=served_over_https(request),
    )


def safe_next(raw: str) -> str:
    """Where to go after signing in: a path on this site only (never another host), no token.

    Browsers drop tabs and newlines from a Location before reading it (``/<TAB>/evil`` becomes
    ``//evil``), so any whitespace or control character refuses the path outright."""
    if (
        not raw.startswith("/")
        or raw.startswith("//")
        or "\\" in raw
        or any(ord(char) <= 0x20 or ord(char) == 0x7F for char in raw)
        or "token=" in unquote(raw).lower()
    ):
        return "/dashboard"
    return raw


def login_url(next_path: str) -> str:
    return f"{LOGIN_PATH}?{urlencode({'next': safe_next(next_path)})}"


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def _page(next_path: str, error: str = "", status: int = 200) -> web.Response:
    html = PAGES.get_template("login.html.j2").render(next=safe_next(next_path), error=error)
    response = web.Response(text=html, status=status, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    if request.get(SIGNED_IN):
        return see_other(safe_next(request.query.get("next", "")))
    return _page(request.query.get("next", ""))


async def login_submit(request: web.Request) -> web.StreamResponse:
    """Check the typed token (``expected`` is compared by the caller's function) and open a session."""
    form = await request.post()
    next_path = str(form.get("next", ""))
    attempts = request.app[ATTEMPTS]
    client = client_address(request)
    wait = attempts.wait_seconds(client)
    if wait:
        minutes = max(1, round(wait / 60))
        return _page(next_path, f"尝试次数太多，请 {minutes} 分钟后再试。", status=429)
    check = request.app[TOKEN_CHECK]
    if not check(str(form.get("token", "")).strip()):
        left = attempts.failed(client)
        log.warning("web: a wrong access token was typed on the login page (from %s)", client)
        message = "访问令牌不对，请检查后重新输入。"
        if left:
            message += f"（还可以再试 {left} 次）"
        else:
            message += "尝试次数太多，请稍后再试。"
        return _page(next_path, message, status=401)
    attempts.succeeded(client)
    session = request.app[SESSIONS].open()
    log.info("web: signed in from %s", client)
    response = see_other(safe_next(next_path))
    set_session_cookie(request, response, session)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS].close(request.cookies.get(COOKIE))
    response = see_other(LOGIN_PATH)
    response.del_cookie(COOKIE, path="/")
    return response


TOKEN_CHECK: web.AppKey[Callable[[str], bool]] = web.AppKey("token_check")


def mount(app: web.Application, check: Callable[[str], bool], now: Now = time.monotonic) -> None:
    app[SESSIONS] = Sessions(now=now)
    app[ATTEMPTS] = Attempts(now=now)
    app[TOKEN_CHECK] = check
    app.router.add_get(LOGIN_PATH, login_page)
    app.router.add_post(LOGIN_PATH, login_submit)
    app.router.add_post(LOGOUT_PATH, logout)
