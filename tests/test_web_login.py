"""Signing in beyond loopback: the login page trades the token for a session cookie (no ``?token=``
in links or pages), wrong tokens get a Chinese answer and are rate-limited, logout ends the session."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.simulate import Simulation
from bot.web import login
from bot.web.app import create_app
from bot.web.simulator import SimulatorState

TOKEN = "s3cret-phone-token"


class FakeMonotonic:
    def __init__(self) -> None:
        self.at = 1000.0

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def ticks() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
async def remote(sim: Simulation, ticks: FakeMonotonic) -> AsyncIterator[TestClient[Any, Any]]:
    """The app as served beyond loopback (reads need the token), with the simulator mounted."""
    state = SimulatorState(sim.bot, sim.clock, "demo", sim.puppet)
    app = create_app(sim.bot.reports, token=TOKEN, token_for_reads=True, simulator=state, now=ticks)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


def session_cookie(response: Any) -> str:
    return str(response.headers.get("Set-Cookie", ""))


async def sign_in(client: TestClient[Any, Any], token: str = TOKEN, **headers: str) -> Any:
    return await client.post(
        "/login", data={"token": token, "next": "/dashboard"}, headers=headers, allow_redirects=False
    )


async def test_a_page_without_a_session_goes_to_the_login_page(remote: TestClient[Any, Any]) -> None:
    response = await remote.get("/dashboard?stage=intent", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=%2Fdashboard%3Fstage%3Dintent"
    page = await (await remote.get(response.headers["Location"])).text()
    assert '<label for="token">访问令牌</label>' in page and 'id="token"' in page
    assert 'type="password"' in page and 'lang="zh-CN"' in page
    api = await remote.get("/api/metrics", allow_redirects=False)
    assert api.status == 401, "the API answers 401 JSON, it is not redirected"


async def test_signing_in_sets_an_httponly_samesite_cookie_and_pages_never_carry_the_token(
    remote: TestClient[Any, Any],
) -> None:
    response = await sign_in(remote)
    assert response.status == 303 and response.headers["Location"] == "/dashboard"
    cookie = session_cookie(response)
    assert cookie.startswith(f"{login.COOKIE}=") and TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie, "plain HTTP: a browser would drop a Secure cookie"
    dashboard = await remote.get("/dashboard")
    assert dashboard.status == 200
    html = await dashboard.text()
    assert TOKEN not in html and "token=" not in html
    assert 'action="/logout"' in html and "退出登录" in html
    simulator = await (await remote.get("/simulator")).text()
    assert TOKEN not in simulator and 'name="token"' not in simulator
    assert (await remote.get("/api/metrics")).status == 200, "the page's own calls ride on the session"


async def test_behind_https_the_cookie_is_secure(remote: TestClient[Any, Any]) -> None:
    response = await sign_in(remote, **{"X-Forwarded-Proto": "https"})
    assert "Secure" in session_cookie(response)


async def test_a_token_in_the_address_becomes_a_session_and_leaves_the_address(
    remote: TestClient[Any, Any],
) -> None:
    response = await remote.get(f"/dashboard?token={TOKEN}&stage=intent", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/dashboard?stage=intent"
    assert "HttpOnly" in session_cookie(response)
    assert (await remote.get("/dashboard", allow_redirects=False)).status == 200
    api = await remote.get("/api/metrics", params={"token": TOKEN}, allow_redirects=False)
    assert api.status == 200, "API clients keep using the token as before"


async def test_a_wrong_token_is_a_clear_chinese_error_and_attempts_are_limited(
    remote: TestClient[Any, Any], ticks: FakeMonotonic
) -> None:
    wrong = await sign_in(remote, "guess")
    assert wrong.status == 401
    text = await wrong.text()
    assert "访问令牌不对" in text and "还可以再试 4 次" in text and 'role="alert"' in text
    assert login.COOKIE not in session_cookie(wrong)
    for _ in range(4):
        await sign_in(remote, "guess")
    blocked = await sign_in(remote)  # even the right token waits until the window passes
    assert blocked.status == 429 and "分钟后再试" in await blocked.text()
    assert (await remote.get("/dashboard", allow_redirects=False)).status == 303
    ticks.at += login.FAILURE_WINDOW_SECONDS + 1
    assert (await sign_in(remote)).status == 303


async def test_logout_ends_the_session_for_good(remote: TestClient[Any, Any]) -> None:
    signed_in = await sign_in(remote)
    session = signed_in.cookies[login.COOKIE].value
    same_site = f"http://{remote.host}:{remote.port}"
    out = await remote.post("/logout", headers={"Origin": same_site}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/login"
    assert f"{login.COOKIE}=;" in session_cookie(out) or 'salesbot_session=""' in session_cookie(out)
    remote.session.cookie_jar.clear()
    replayed = await remote.get("/dashboard", cookies={login.COOKIE: session}, allow_redirects=False)
    assert replayed.status == 303, "a copied cookie is worthless after logout"


async def test_a_session_expires(remote: TestClient[Any, Any], ticks: FakeMonotonic) -> None:
    await sign_in(remote)
    assert (await remote.get("/dashboard", allow_redirects=False)).status == 200
    ticks.at += login.SESSION_SECONDS + 1
    assert (await remote.get("/dashboard", allow_redirects=False)).status == 303


async def test_a_session_allows_a_change_only_from_this_site(
    remote: TestClient[Any, Any], sim: Simulation
) -> None:
    await sign_in(remote)
    body = {"name": "张三"}
    assert (await remote.post("/sim/friend_request", json=body)).status == 401, "no Origin: not a page"
    evil = await remote.post("/sim/friend_request", json=body, headers={"Origin": "http://evil.example"})
    assert evil.status == 403
    same_site = f"http://{remote.host}:{remote.port}"
    ok = await remote.post("/sim/friend_request", json=body, headers={"Origin": same_site})
    assert ok.status == 200


async def test_login_from_another_site_is_refused(remote: TestClient[Any, Any]) -> None:
    response = await sign_in(remote, Origin="http://evil.example")
    assert response.status == 403 and login.COOKIE not in session_cookie(response)


def test_after_login_only_a_path_on_this_site() -> None:
    for bad in ("//evil.example/x", "https://evil.example", "/\\evil.example", "", "/dashboard?token=x"):
        assert login.safe_next(bad) == "/dashboard", bad
    assert login.safe_next("/dashboard?stage=intent") == "/dashboard?stage=intent"


def test_after_login_a_path_a_browser_would_read_as_another_host_is_refused() -> None:
    # browsers drop tabs and newlines from a Location before reading it: "/\t/evil" is "//evil"
    for bad in ("/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "/ /evil.example", "/\x00/x"):
        assert login.safe_next(bad) == "/dashboard", repr(bad)
    for leaky in ("/dashboard?TOKEN=x", "/dashboard?%74oken=x"):
        assert login.safe_next(leaky) == "/dashboard", leaky


async def test_a_signed_in_browser_is_not_sent_to_another_host(remote: TestClient[Any, Any]) -> None:
    await sign_in(remote)
    response = await remote.get("/login?next=/%09/evil.example", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/dashboard"
    typed = await remote.post(
        "/login", data={"token": TOKEN, "next": "/\t/evil.example"}, allow_redirects=False
    )
    assert typed.headers["Location"] == "/dashboard"


async def test_the_token_never_reaches_a_log_line(
    remote: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await sign_in(remote, "wrong-guess-typed")
    await sign_in(remote)
    await remote.get(f"/dashboard?token={TOKEN}")
    # salesbot run serves without an access log (bot/runner.py); the test server keeps aiohttp's
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("bot."))
    assert "signed in" in ours and "wrong access token" in ours
    assert TOKEN not in ours and "wrong-guess-typed" not in ours


def test_the_startup_line_names_the_login_page_not_the_token() -> None:
    from bot.runner import phone_url

    assert phone_url("192.168.1.5", 8080) == "http://192.168.1.5:8080/login"
    assert phone_url("fd00::5", 8080) == "http://[fd00::5]:8080/login"
    anywhere = phone_url("0.0.0.0", 8080)
    assert anywhere.startswith("http://") and anywhere.endswith(":8080/login") and "0.0.0.0" not in anywhere


async def test_listening_beyond_loopback_logs_where_to_sign_in(
    sim: Simulation, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.runner import banner, start_web

    monkeypatch.setenv("SALESBOT_WEB_TOKEN", TOKEN)
    caplog.set_level(logging.INFO, logger="salesbot")
    runner, url, note, _generated = await start_web(sim.bot, sim.config, "0.0.0.0", 0)
    try:
        [line] = [r.getMessage() for r in caplog.records if "sign in" in r.getMessage()]
        assert "/login" in line and TOKEN not in line and "token=" not in line
        shown = banner(sim.config, "config.toml", url, note, phone="http://10.0.0.2:8080/login")
        assert "from a phone: http://10.0.0.2:8080/login" in shown and TOKEN not in shown
    finally:
        await runner.cleanup()


async def test_guessing_the_token_through_the_api_is_limited_like_the_login_page(
    remote: TestClient[Any, Any], ticks: FakeMonotonic
) -> None:
    """The login page's limit means nothing if the API lets a script guess on without one."""
    for guess in range(login.MAX_FAILURES):
        wrong = await remote.get("/api/metrics", headers={"Authorization": f"Bearer guess{guess}"})
        assert wrong.status == 401
    blocked = await remote.get("/api/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert blocked.status == 429 and "error" in await blocked.json()
    assert (await remote.get(f"/dashboard?token={TOKEN}", allow_redirects=False)).status == 429
    ticks.at += login.FAILURE_WINDOW_SECONDS + 1
    allowed = await remote.get("/api/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status == 200


async def test_pages_cannot_be_framed_by_another_site(remote: TestClient[Any, Any]) -> None:
    """A page framed on another site could trick a click (the simulator acts, the dashboard signs out)."""
    for path in ("/login", "/dashboard", "/api/metrics"):
        response = await remote.get(path, allow_redirects=False)
        assert response.headers.get("X-Frame-Options") == "DENY", path
        assert "frame-ancestors 'none'" in response.headers.get("Content-Security-Policy", ""), path
        assert response.headers.get("Referrer-Policy") == "same-origin", path
