"""The dashboard and JSON API over a real bot's data: routes, filters, status codes, auth, errors."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.simulate import Simulation
from bot.web.app import create_app, is_loopback

TOKEN = "s3cret-token"


async def client_for(sim: Simulation, *, token_for_reads: bool = False) -> TestClient[Any, Any]:
    client = TestClient(TestServer(create_app(sim.bot.reports, token=TOKEN, token_for_reads=token_for_reads)))
    await client.start_server()
    return client


@pytest.fixture
async def busy(sim: Simulation) -> Simulation:
    await sim.friend_request("c1", "张三", "小红书")
    await sim.friend_request("c2", "李四")
    await sim.friend_request("c3", "<script>alert(1)</script>")
    await sim.advance(timedelta(minutes=1))
    await sim.customer_says("c1", "太贵了")
    await sim.rep_types("/tag @张三 预算:20-30万")
    await sim.rep_types("/stage @张三 intent")
    await sim.rep_types("/order @李四 SUV")
    return sim


@pytest.fixture
async def client(busy: Simulation) -> AsyncIterator[TestClient[Any, Any]]:
    client = await client_for(busy)
    yield client
    await client.close()


async def test_metrics_match_the_day(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/metrics")
    assert response.status == 200
    data = await response.json()
    assert data["date"] == "2026-11-23"
    team = data["team"]
    assert (team["new_friends"], team["replied"], team["orders"]) == (3, 1, 1)
    assert team["objections"] == {"price": 1}
    assert data["reps"]["demo"]["nickname"] == "小林"
    funnel = {row["stage"]: row["customers"] for row in data["funnel"]}
    assert funnel == {"stranger": 1, "potential": 0, "intent": 1, "ordered": 1, "repeat": 0, "koc": 0}


async def test_customers_with_filters_and_paging(client: TestClient[Any, Any]) -> None:
    everyone = await (await client.get("/api/customers")).json()
    assert everyone["total"] == 3 and [c["id"] for c in everyone["customers"]] == [1, 2, 3]
    by_stage = await (await client.get("/api/customers", params={"stage": "意向"})).json()
    assert [c["name"] for c in by_stage["customers"]] == ["张三"]
    by_tag = await (await client.get("/api/customers", params={"tag": "预算:20-30万"})).json()
    assert [c["id"] for c in by_tag["customers"]] == [1]
    by_account = await (await client.get("/api/customers", params={"account": "nobody"})).json()
    assert by_account["total"] == 0
    page = await (await client.get("/api/customers", params={"limit": "1", "offset": "1"})).json()
    assert page["total"] == 3 and [c["id"] for c in page["customers"]] == [2]
    silent = await (await client.get("/api/customers", params={"silent_days": "1"})).json()
    assert silent["total"] == 0, "everyone was in touch today"


async def test_customer_detail_and_not_found(client: TestClient[Any, Any]) -> None:
    detail = await (await client.get("/api/customers/1")).json()
    assert detail["stage"] == "intent" and detail["source"] == "小红书"
    assert {"group": "消费", "value": "20-30万"}.items() <= detail["tags"][-1].items()
    assert detail["objections"] == ["price"]
    for path in ("/api/customers/999", "/api/customers/abc"):
        response = await client.get(path)
        assert response.status == 404 and (await response.json()) == {"error": "no such customer"}


async def test_scheduled(client: TestClient[Any, Any]) -> None:
    pending = await (await client.get("/api/scheduled")).json()
    kinds = {row["kind"] for row in pending}
    assert "aftercare" in kinds and "digest" in kinds
    assert all(row["status"] == "pending" for row in pending)
    assert (await client.get("/api/scheduled", params={"status": "nope"})).status == 400


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/customers", {"limit": "0"}),
        ("/api/customers", {"silent_days": "x"}),
        ("/api/metrics", {"date": "23/11"}),
        ("/api/metrics", {"date": "9999-12-31"}),
        ("/api/customers", {"tag": "a\x00b"}),
        ("/api/customers", {"stage": "\x00"}),
        ("/api/customers", {"account": "\x00"}),
        ("/api/customers", {"tag": "层级:Z"}),
    ],
)
async def test_bad_parameters_get_a_clear_400(
    client: TestClient[Any, Any], path: str, params: dict[str, str]
) -> None:
    response = await client.get(path, params=params)
    assert response.status == 400
    assert (await response.json())["error"]


async def test_dashboard_html_with_funnel_and_escaping(client: TestClient[Any, Any]) -> None:
    response = await client.get("/dashboard")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert '<svg id="funnel"' in page
    assert 'data-stage="intent" data-count="1"' in page and 'data-stage="koc" data-count="0"' in page
    assert '<b id="m-new-friends">3</b>' in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "http://" not in page.replace("http://www.w3.org", ""), "no CDN or remote asset"
    assert re.search(r"<td>\d{4}-\d{2}-\d{2} \d{2}:\d{2}</td>", page), "times read 2026-11-24 10:30"
    assert not re.search(r"\d{4}-\d{2}-\d{2}T\d{2}", page), "never an ISO T in what a person reads"
    filtered = await (await client.get("/dashboard", params={"stage": "ordered"})).text()
    assert "客户（共 1 位）" in filtered
    assert (await client.get("/", allow_redirects=False)).headers["Location"] == "/dashboard"


async def test_unknown_route_and_mutations(client: TestClient[Any, Any]) -> None:
    missing = await client.get("/api/nope")
    assert missing.status == 404 and "error" in await missing.json()
    page = await client.get("/nope")
    assert page.status == 404 and "Traceback" not in await page.text()
    assert (await client.post("/api/customers")).status == 401, "mutations always need the token"
    authorized = await client.post("/api/customers", headers={"Authorization": f"Bearer {TOKEN}"})
    assert authorized.status == 405


async def test_error_pages_a_person_opens_speak_chinese(client: TestClient[Any, Any]) -> None:
    """The API answers in English for programs; a page a person opens never does."""
    missing = await (await client.get("/nope")).text()
    assert "没有这个页面" in missing and "Not Found" not in missing
    rebound = await (await client.get("/dashboard", headers={"Host": "evil.example"})).text()
    assert "localhost" in rebound and "only answers" not in rebound
    cross = await client.post("/logout", headers={"Origin": "http://evil.example"})
    assert cross.status == 403 and "其他网站" in await cross.text()
    api = await client.get("/api/nope")
    assert (await api.json())["error"] == "Not Found", "programs keep the English reason"


async def test_internal_errors_never_show_a_stack_trace(
    busy: Simulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(**_: Any) -> Any:
        raise RuntimeError("secret detail of the database")

    monkeypatch.setattr(busy.bot.reports, "customers", broken)
    client = await client_for(busy)
    try:
        for path in ("/api/customers", "/dashboard"):
            response = await client.get(path)
            body = await response.text()
            assert response.status == 500
            assert "secret detail" not in body and "Traceback" not in body
    finally:
        await client.close()


async def test_token_required_beyond_loopback(busy: Simulation) -> None:
    client = await client_for(busy, token_for_reads=True)
    try:
        assert (await client.get("/api/metrics")).status == 401
        page = await client.get("/dashboard", allow_redirects=False)
        assert page.status == 303 and page.headers["Location"].startswith("/login")  # a person signs in
        assert (await client.get("/api/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await client.get("/api/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200
        assert (await client.get("/dashboard", params={"token": TOKEN})).status == 200
    finally:
        await client.close()


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")


async def simulator_client(sim: Simulation) -> TestClient[Any, Any]:
    from bot.web.simulator import SimulatorState

    state = SimulatorState(sim.bot, sim.clock, "demo", sim.puppet)
    client = TestClient(
        TestServer(create_app(sim.bot.reports, token=TOKEN, token_for_reads=False, simulator=state))
    )
    await client.start_server()
    return client


async def test_simulator_endpoints_need_the_token_and_validate_input(sim: Simulation) -> None:
    client = await simulator_client(sim)
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = {"name": "张三", "hello": "小红书"}
        assert (await client.post("/sim/friend_request", json=body)).status == 401
        ok = await client.post("/sim/friend_request", json=body, headers=auth)
        assert ok.status == 200 and (await ok.json())["handle"] == "c1", "the server issues the handle"
        assert (await client.post("/sim/advance", json={"duration": "1m"}, headers=auth)).status == 200
        assert [m["kind"] for m in sim.output] == [], "the web simulator drives the bot, not the scenario log"
        card = await (await client.get("/sim/card/c1")).json()
        assert card["source"] == "小红书" and card["name"] == "张三"
        for path, payload, reason in [
            ("/sim/say", {"handle": "c9", "text": "hi"}, "请先在手机上加这位客户为好友"),
            ("/sim/say", {"handle": "c1"}, "请填写要发送的内容"),
            ("/sim/friend_request", {"name": " "}, "请填写客户名字"),
            ("/sim/advance", {"duration": "soon"}, "快进时长不对"),
            ("/sim/advance", {"duration": "500d"}, "一次最多 400 天"),
            ("/sim/current", {"handle": "../x"}, "请先在手机上加这位客户为好友"),
        ]:
            response = await client.post(path, json=payload, headers=auth)
            error = (await response.json())["error"]
            assert response.status == 400 and reason in error, (path, error)
            assert not re.search(r"[A-Za-z]{4,}", error), f"the page shows Chinese reasons: {error}"
        bad = await client.post("/sim/say", data="not json", headers=auth)
        assert bad.status == 400 and "JSON" in (await bad.json())["error"]
        missing = await client.get("/sim/card/nobody")
        assert missing.status == 404 and (await missing.json())["error"] == "还没有这位客户"
        page = await client.get("/simulator")
        assert page.status == 200 and TOKEN not in await page.text(), "no secret in a page"
        origin = {"Origin": str(client.make_url("/")).rstrip("/")}
        step = await client.post("/sim/advance", json={"duration": "1m"}, headers=origin)
        assert step.status == 200, "the page's calls ride on the session cookie it was served with"
        cross = {"Origin": "http://evil.example"}
        assert (await client.post("/sim/advance", json={"duration": "1m"}, headers=cross)).status == 403
    finally:
        await client.close()


async def test_simulator_keeps_customers_and_histories_and_never_merges_two_customers(
    sim: Simulation,
) -> None:
    """The bug: a reload forgot the page's customers, the next one reused handle c1, and the server
    renamed the existing contact (two customers merged into one, no welcome for the newcomer)."""
    client = await simulator_client(sim)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        first = await (
            await client.post("/sim/friend_request", json={"name": "张三", "hello": "抖音"}, headers=auth)
        ).json()
        # a second tab (or a reloaded page) adds a customer with the same name
        second = await (await client.post("/sim/friend_request", json={"name": "张三"}, headers=auth)).json()
        assert first["handle"] != second["handle"]
        await client.post("/sim/advance", json={"duration": "1m"}, headers=auth)
        await client.post("/sim/say", json={"handle": first["handle"], "text": "太贵了"}, headers=auth)
        await client.post("/sim/rep", json={"text": "/note @张三 周六来"}, headers=auth)
        await client.post("/sim/rep", json={"text": "/pick 1"}, headers=auth)
        state = await (await client.get("/sim/state")).json()
    finally:
        await client.close()
    customers = state["customers"]
    assert [c["name"] for c in customers] == ["张三", "张三"]
    ids = {c["customer_id"] for c in customers}
    assert len(ids) == 2 and None not in ids, "two customers, never one renamed"
    phone = [(m["handle"], m["label"], m["text"]) for m in state["lines"] if m["pane"] == "phone"]
    assert phone[0] == (first["handle"], "好友申请", "抖音"), "the customer's hello is on the phone"
    welcomes = [h for h, label, _ in phone if label == "欢迎语"]
    assert sorted(welcomes) == sorted([first["handle"], second["handle"]]), "each newcomer is welcomed"
    assert (first["handle"], "客户", "太贵了") in phone
    console = [(m["label"], m["text"]) for m in state["lines"] if m["pane"] == "console"]
    assert console[:2] == [("模拟器提示", "新好友：张三（验证消息：抖音）"), ("模拟器提示", "新好友：张三")]
    typed = console.index(("我", "/note @张三 周六来"))
    assert console[typed + 1][0] == "命令回复" and "/pick" in console[typed + 1][1], console
    assert console[typed + 2 :] == [("我", "/pick 1"), console[-1]] and "周六来" in console[-1][1]
    for line in state["lines"]:
        assert "T" not in line["at"] and re.fullmatch(r"\d\d-\d\d \d\d:\d\d", line["at"])
        assert line["label"] and not re.search(r"[a-z_]{4,}", line["label"]), line["label"]
    assert state["current"] in ids, "the console's current customer (the picker follows commands)"

    # a restart on the same database: the phone's customers and histories come back
    again = await simulator_client(sim)
    try:
        restored = await (await again.get("/sim/state")).json()
        assert restored["customers"] == customers and restored["lines"] == state["lines"]
        said = await again.post("/sim/say", json={"handle": second["handle"], "text": "在吗"}, headers=auth)
        assert said.status == 200, "the restarted phone still has its friends"
        third = await (await again.post("/sim/friend_request", json={"name": "李四"}, headers=auth)).json()
        assert third["handle"] not in {first["handle"], second["handle"]}
        chosen = await again.post("/sim/current", json={"handle": second["handle"]}, headers=auth)
        second_id = next(c["customer_id"] for c in customers if c["handle"] == second["handle"])
        assert (await chosen.json())["current"] == second_id
        await again.post("/sim/rep", json={"text": "/note 第二位"}, headers=auth)
        card = await (await again.get(f"/sim/card/{second['handle']}")).json()
        assert [n["text"] for n in card["notes"]] == ["第二位"], "the picker sets whom a command acts on"
        cleared = await again.post("/sim/current", json={"handle": ""}, headers=auth)
        assert (await cleared.json())["current"] is None
        # a script may name the handle: the same one again is the platform repeating the request;
        # another name under it is refused, never a rename
        again_first = {"handle": first["handle"], "name": "张三"}
        assert (await again.post("/sim/friend_request", json=again_first, headers=auth)).status == 200
        renamed = await again.post("/sim/friend_request", json={**again_first, "name": "王五"}, headers=auth)
        assert renamed.status == 409 and "不会改名或合并" in (await renamed.json())["error"]
        named = await again.post("/sim/friend_request", json={"handle": "zhao", "name": "赵六"}, headers=auth)
        assert (await named.json())["handle"] == "zhao"
        bad = await again.post("/sim/friend_request", json={"handle": "../x", "name": "n"}, headers=auth)
        assert bad.status == 400 and "客户编号" in (await bad.json())["error"]
        names = [c["name"] for c in (await (await again.get("/sim/state")).json())["customers"]]
        assert names == ["张三", "张三", "李四", "赵六"]
    finally:
        await again.close()


async def test_simulator_is_not_mounted_without_a_local_transport(busy: Simulation) -> None:
    client = await client_for(busy)
    try:
        assert (await client.get("/simulator")).status == 404
        assert (
            await client.post("/sim/say", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
        ).status == 404
    finally:
        await client.close()


async def test_listening_beyond_loopback_generates_a_token_and_requires_it(
    busy: Simulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.error
    import urllib.request

    from bot.runner import start_web

    monkeypatch.delenv("SALESBOT_WEB_TOKEN", raising=False)
    runner, url, note, token = await start_web(busy.bot, busy.config, "0.0.0.0", 0)
    try:
        assert note == "" and token  # run() shows it on a terminal or writes it to a file
        port = url.rsplit(":", 1)[1]
        local = f"http://127.0.0.1:{port}/api/metrics"

        def status(request: urllib.request.Request) -> int:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        import asyncio

        assert await asyncio.to_thread(status, urllib.request.Request(local)) == 401
        authorized = urllib.request.Request(local, headers={"Authorization": f"Bearer {token}"})
        assert await asyncio.to_thread(status, authorized) == 200
    finally:
        await runner.cleanup()


async def test_accounts_show_their_connection_state(sim: Simulation) -> None:
    client = await client_for(sim)
    try:
        [online] = await (await client.get("/api/accounts")).json()
        assert (online["id"], online["connected"], online["reason"]) == ("demo", True, "logged in")
        sim.puppet.go_offline()
        await sim.advance(timedelta(minutes=1))
        [offline] = await (await client.get("/api/accounts")).json()
        assert (offline["connected"], offline["reason"]) == (False, "logged out")
        assert offline["since"].startswith("2026-11-23T10:00")
        page = await (await client.get("/dashboard")).text()
        assert 'data-account="demo" data-connected="no"' in page and "离线" in page
    finally:
        await client.close()


async def test_on_loopback_a_request_naming_another_host_is_refused(client: TestClient[Any, Any]) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends its own Host."""
    rebound = await client.get("/api/metrics", headers={"Host": "evil.example:8080"})
    assert rebound.status == 403 and "localhost" in (await rebound.json())["error"]
    assert (await client.get("/dashboard", headers={"Host": "evil.example"})).status == 403
    for host in ("localhost:8080", "127.0.0.1", "[::1]:9"):
        assert (await client.get("/api/metrics", headers={"Host": host})).status == 200, host


async def test_a_mutating_request_from_another_site_is_refused_even_with_the_token(sim: Simulation) -> None:
    client = await simulator_client(sim)
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = {"name": "张三"}
        for origin in ("http://evil.example", "null", "http://localhost:1"):
            response = await client.post("/sim/friend_request", json=body, headers={**auth, "Origin": origin})
            assert response.status == 403, origin
        assert sim.puppet.accepted == []
        same = f"http://{client.host}:{client.port}"
        ok = await client.post("/sim/friend_request", json=body, headers={**auth, "Origin": same})
        assert ok.status == 200  # the simulator page itself, and clients that send no Origin
    finally:
        await client.close()


async def test_a_token_with_non_ascii_characters_is_refused_not_an_error(busy: Simulation) -> None:
    client = await client_for(busy, token_for_reads=True)
    try:
        for token in ("令牌", "s3cret-token令"):
            response = await client.get("/api/metrics", params={"token": token})
            assert response.status == 401, token
        raw = await client.get("/api/metrics", headers={"Authorization": "Bearer t\xe9st"})
        assert raw.status == 401
    finally:
        await client.close()
