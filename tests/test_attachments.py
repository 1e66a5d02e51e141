"""Attachments: templates name images, files, link and mini-program cards from scripts_templates/media;
`salesbot check` refuses a broken media library; the local puppet receives them (simulate shows
them); the outbox sends text and attachment exactly once each, even across a crash between the two.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app import validate_setup
from bot.clock import VirtualClock
from bot.errors import TemplateError, TransportError
from bot.hooks import Hooks, Undeliverable
from bot.media import Attachment, MediaLibrary, MediaType
from bot.services.alerts import undeliverable
from bot.services.messenger import Messenger
from bot.services.outbox import Composed, Dispatcher
from bot.templates import TemplateLibrary
from storage.db import Database
from storage.models import Account, Customer, Event, OutgoingMessage, ScheduledMessage
from storage.repositories import Outbox
from tests.conftest import MONDAY_10AM, ROOT, make_config
from tests.harness import Harness

LINK_AND_CARD = """
[store-guide]
type = "link"
url = "https://example.com/guide"
title = "到店指南"
description = "地址、停车和营业时间"
thumbnail = "https://example.com/guide.png"

[booking]
type = "miniprogram"
appid = "wx1234567890abcdef"
username = "gh_0123456789ab"
title = "预约试驾"
page_path = "pages/booking/index"
"""


def templates_copy(tmp_path: Path, extra_media: str = "") -> Path:
    """The shipped templates folder, copied so a test may edit templates and media."""
    root = tmp_path / "templates"
    shutil.copytree(ROOT / "scripts_templates", root)
    if extra_media:
        manifest = root / "media" / "media.toml"
        manifest.write_text(manifest.read_text(encoding="utf-8") + extra_media, encoding="utf-8")
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


# -- salesbot check -----------------------------------------------------------------------------------


def test_the_shipped_media_library_is_valid() -> None:
    media = MediaLibrary.load(ROOT / "scripts_templates")
    gift = media.get("gift")
    assert gift is not None and gift.type is MediaType.FILE and gift.path is not None
    assert gift.path.read_bytes().startswith(b"%PDF-")
    assert {media.items[k].type for k in ("proof-1", "proof-2", "proof-3")} == {MediaType.IMAGE}


def test_a_missing_media_file_fails_check_naming_the_file_and_key(tmp_path: Path) -> None:
    root = templates_copy(tmp_path)
    (root / "media" / "购车避坑指南.pdf").unlink()
    config = make_config({"templates_dir": str(root)})
    with pytest.raises(TemplateError) as error:
        validate_setup(config, model_checked=True)
    message = str(error.value)
    assert "media.toml: [gift]" in message and "购车避坑指南.pdf not found" in message


@pytest.mark.parametrize(
    ("entry", "files", "expected"),
    [
        (
            'type = "image"\nfile = "big.png"',
            {"big.png": b"\x89PNG\r\n\x1a\n" + b"0" * (5 * 1024 * 1024)},
            "at most 5 MB",
        ),
        (
            'type = "image"\nfile = "fake.png"',
            {"fake.png": b"%PDF-1.4 not an image"},
            "does not hold a png image",
        ),
        ('type = "image"\nfile = "doc.pdf"', {"doc.pdf": b"%PDF-1.4"}, "is not an image"),
        ('type = "file"\nfile = "run.exe"', {"run.exe": b"MZ"}, "files of this type are not sent"),
        ('type = "video"\nfile = "a.mp4"', {}, "type must be one of image, file, link, miniprogram"),
        ('type = "link"\nurl = "https://example.com"', {}, "missing title"),
        ('type = "link"\nurl = "ftp://example.com"\ntitle = "t"', {}, "url must be an http(s) URL"),
        ('type = "miniprogram"\nappid = "wx1"\ntitle = "t"\npage_path = "p"', {}, "missing username"),
        ('type = "image"\nfile = "proof-1.png"\nurl = "https://x"', {}, "unknown field 'url' for an image"),
        # a file outside the media folder (a typo, or a manifest that would send any file of the machine)
        ('type = "file"\nfile = "../config.pdf"', {"../config.pdf": b"%PDF-1.4"}, "inside the media folder"),
        ('type = "file"\nfile = "/etc/x.pdf"', {}, "inside the media folder"),
    ],
)
def test_check_refuses_a_bad_media_entry(
    tmp_path: Path, entry: str, files: dict[str, bytes], expected: str
) -> None:
    root = templates_copy(tmp_path)
    for name, content in files.items():
        (root / "media" / name).write_bytes(content)
    manifest = root / "media" / "media.toml"
    manifest.write_text(manifest.read_text(encoding="utf-8") + f"\n[odd]\n{entry}\n", encoding="utf-8")
    with pytest.raises(TemplateError) as error:
        TemplateLibrary(root).validate()
    assert "[odd]" in str(error.value) and expected in str(error.value)


def test_a_template_naming_an_unknown_attachment_fails_check_with_its_line(tmp_path: Path) -> None:
    root = templates_copy(tmp_path)
    edit(root / "hooks" / "gift.txt.j2", 'attach("gift")', 'attach("gfit")')
    with pytest.raises(TemplateError) as error:
        TemplateLibrary(root).validate()
    assert "gift.txt.j2:3: attachment 'gfit' is not in" in str(error.value)


def test_a_digest_cannot_attach(tmp_path: Path) -> None:
    root = templates_copy(tmp_path)
    digest = root / "digest" / "daily.txt.j2"
    digest.write_text('{{ attach("gift") }}' + digest.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(TemplateError, match="unknown variable 'attach'"):
        TemplateLibrary(root).validate()


# -- through templates, on the local puppet -----------------------------------------------------------


async def test_countdown_steps_carry_a_rotating_proof_image(tmp_path: Path, db_url: str) -> None:
    root = templates_copy(tmp_path)
    edit(
        root / "countdown" / "step.txt.j2",
        "我帮您把名额先留着。{% endif %}",
        '我帮您把名额先留着。{{ attach("proof-1", "proof-2", "proof-3") }}{% endif %}',
    )
    config = make_config({"templates_dir": str(root), "countdown": {"offsets": ["3d", "2d", "1d", "1h"]}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.customer_in_chat()
        await sim.rep("/countdown @张三 周五晚上8点")
        await sim.advance(timedelta(days=5))
        lines = sim.sent("countdown", "c1")
        texts = [m for m in lines if "attachment" not in m]
        images = [m["attachment"] for m in lines if "attachment" in m]
        assert len(texts) == 4  # 3d, 2d, 1d and the last hour (which asks to act: no proof)
        assert [a["type"] for a in images] == ["image"] * 3
        assert len({a["name"] for a in images}) == 3  # a different proof each step
        # each image follows its own step's text
        assert ["attachment" in m for m in lines] == [False, True, False, True, False, True, False]


async def test_text_and_its_attachment_count_once_against_the_daily_cap(tmp_path: Path, db_url: str) -> None:
    """Four steps in one day, each with an image, fit the customer's cap of four messages a day."""
    root = templates_copy(tmp_path)
    step = root / "countdown" / "step.txt.j2"
    step.write_text(step.read_text(encoding="utf-8") + '{{ attach("proof-1", "proof-2") }}', encoding="utf-8")
    config = make_config({"templates_dir": str(root), "countdown": {"offsets": ["4h", "3h", "2h", "1h"]}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.customer_in_chat()
        await sim.rep("/countdown @张三 今天20:00")
        await sim.advance(timedelta(hours=10))
        lines = sim.sent("countdown", "c1")
        assert len(lines) == 8 and sum("attachment" in m for m in lines) == 4


async def test_aftercare_link_and_mini_program_cards_reach_the_customer(tmp_path: Path, db_url: str) -> None:
    root = templates_copy(tmp_path, LINK_AND_CARD)
    edit(
        root / "aftercare" / "t1.txt.j2",
        "{% if customer.name %}",
        '{{ attach("store-guide") }}{% if customer.name %}',
    )
    edit(
        root / "aftercare" / "t3.txt.j2",
        "{% if customer.name %}",
        '{{ attach("booking") }}{% if customer.name %}',
    )
    config = make_config({"templates_dir": str(root)})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.customer_in_chat()
        await sim.rep("/order @张三 SUV")
        await sim.advance(timedelta(days=3, hours=2))
        attached = [m["attachment"] for m in sim.sent("aftercare", "c1") if "attachment" in m]
        assert attached == [{"type": "link", "name": "到店指南"}, {"type": "miniprogram", "name": "预约试驾"}]
        [link] = [s for s in sim.puppet.sent if s.attachment and s.attachment["type"] == "link"]
        assert link.attachment is not None and link.attachment["url"] == "https://example.com/guide"
        # the outgoing log keeps a readable stand-in, each part under its own key
        logged = await sim.rows(OutgoingMessage, OutgoingMessage.kind == "aftercare")
        assert sorted(m.text for m in logged if m.text.startswith("[")) == [
            "[小程序] 预约试驾",
            "[链接] 到店指南",
        ]
        assert all(m.idempotency_key.endswith((":1", ":attachment")) for m in logged)


async def test_a_welcome_with_a_card_still_promises_the_gift(tmp_path: Path, db_url: str) -> None:
    """The promise is in the welcome's text; the card sent after it does not hide it."""
    root = templates_copy(tmp_path, LINK_AND_CARD)
    welcome = root / "welcome" / "default.txt.j2"
    welcome.write_text(welcome.read_text(encoding="utf-8") + '{{ attach("store-guide") }}', encoding="utf-8")
    async with Harness(make_config({"templates_dir": str(root)}), MONDAY_10AM, database_url=db_url) as sim:
        await sim.new_customer()
        assert [m.get("attachment") for m in sim.sent("welcome", "c1")] == [
            None,
            {"type": "link", "name": "到店指南"},
        ]
        await sim.customer_says("c1", "礼物")
        [gift, gift_file] = sim.sent("auto_reply", "c1")
        assert "见面礼" in gift["text"] and gift_file["attachment"]["name"] == "购车避坑指南.pdf"


async def test_an_attachment_is_never_read_back_as_a_rep_message(sim: Harness) -> None:
    """The local puppet echoes the account's own sends; the file's echo is no command, no contact."""
    await sim.new_customer()
    await sim.customer_says("c1", "礼物")
    [_, gift_file] = sim.sent("auto_reply", "c1")
    assert gift_file["attachment"]["name"] == "购车避坑指南.pdf"
    assert sim.sent("command_reply") == []
    assert await sim.rows(Event, Event.kind == "rep_message") == []


# -- exactly once each, across a crash ------------------------------------------------------------------

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
GUIDE = Attachment(
    key="guide", type=MediaType.FILE, path=ROOT / "scripts_templates" / "media" / "购车避坑指南.pdf"
)


class Crash(BaseException):
    """Stands in for the process being killed (nothing after it runs)."""


class Platform:
    """Records what reached the platform; may die while sending the attachment."""

    account_id = "a"

    def __init__(self, *, die_on_attachment: bool = False) -> None:
        self.arrived: list[str] = []
        self.die_on_attachment = die_on_attachment

    async def send_text(self, conversation_id: str, text: str) -> str | None:
        self.arrived.append(text)
        return f"m-{len(self.arrived)}"

    async def send_attachment(self, conversation_id: str, attachment: Attachment) -> str | None:
        self.arrived.append(attachment.describe())
        if self.die_on_attachment:
            raise Crash
        return f"m-{len(self.arrived)}"


class WithAttachment:
    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        assert customer is not None
        return Composed(customer.wechat_id, "送您一份指南", attachment=GUIDE)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.migrate()
    async with database.transaction() as session:
        session.add(Account(id="a", nickname="n", role="r", created_at=NOW, updated_at=NOW))
        session.add(Customer(id=1, account_id="a", wechat_id="wx-a", stage="stranger", added_at=NOW))
        await Outbox(session).plan(
            ScheduledMessage(
                account_id="a",
                customer_id=1,
                kind="bulk",
                sequence="bulk",
                step="1",
                template="-",
                due_at=NOW - timedelta(minutes=1),
                not_after=NOW + timedelta(days=1),
                status="pending",
                idempotency_key="a:1:bulk:1",
                created_at=NOW,
                updated_at=NOW,
            )
        )
    yield database
    await database.close()


def dispatcher(db: Database, platform: Platform) -> Dispatcher:
    clock = VirtualClock(NOW)
    messenger = Messenger(db, clock, {"a": platform})  # type: ignore[dict-item]
    return Dispatcher(db, clock, messenger, {"bulk": WithAttachment()})


async def row_status(db: Database) -> str:
    async with db.transaction() as session:
        [row] = (await session.exec(select(ScheduledMessage))).all()
    return row.status


async def test_text_and_attachment_go_out_once_each_across_a_crash_between_them(db: Database) -> None:
    platform = Platform()
    first = dispatcher(db, platform)
    settle = first._settle_all

    async def die_before_the_attachment(*args: Any) -> Any:
        if args[1]:  # the text went out and its outcome is written: the process dies here
            raise Crash
        return await settle(*args)

    first._settle_all = die_before_the_attachment  # type: ignore[method-assign,assignment]
    with pytest.raises(Crash):
        await first.run_due()
    assert platform.arrived == ["送您一份指南"]

    restarted = dispatcher(db, platform)
    await restarted.recover()
    await restarted.run_due()
    assert platform.arrived == ["送您一份指南", "[文件] 购车避坑指南.pdf"]
    assert await row_status(db) == "sent"
    await restarted.run_due()
    assert len(platform.arrived) == 2
    async with db.transaction() as session:
        logged = (await session.exec(select(OutgoingMessage))).all()
        events = (await session.exec(select(Event).where(Event.kind == "message_out"))).all()
    # what the dead process sent is written down once: when, and a message_out each
    assert all(m.status == "sent" and m.sent_at is not None for m in logged) and len(logged) == 2
    assert sorted(e.text or "" for e in events) == ["[文件] 购车避坑指南.pdf", "送您一份指南"]


async def test_an_attachment_cut_off_midway_is_never_sent_again(db: Database) -> None:
    platform = Platform(die_on_attachment=True)
    with pytest.raises(Crash):
        await dispatcher(db, platform).run_due()
    platform.die_on_attachment = False
    restarted = dispatcher(db, platform)
    recovery = await restarted.recover()
    await restarted.run_due()
    assert platform.arrived == ["送您一份指南", "[文件] 购车避坑指南.pdf"]  # at most once: in doubt
    assert len(recovery.in_doubt) == 1 and await row_status(db) == "failed"


async def test_an_attachment_that_fails_after_its_text_is_reported_as_the_part_not_sent(
    db: Database,
) -> None:
    """The text reached the customer: telling the rep the whole message was not sent would have
    them send the text twice. The alert names what is missing."""

    class RefusesFiles(Platform):
        async def send_attachment(self, conversation_id: str, attachment: Attachment) -> str | None:
            raise TransportError("upload rejected: file too large")

    platform = RefusesFiles()
    hooks = Hooks()
    heard: list[Undeliverable] = []

    async def listen(event: Undeliverable) -> None:
        heard.append(event)

    hooks.on(Undeliverable, listen)
    sender = dispatcher(db, platform)
    sender.hooks = hooks
    await sender.run_due()
    assert platform.arrived == ["送您一份指南"]
    [event] = heard
    assert event.unsent == "文件「购车避坑指南.pdf」"
    customer = Customer(
        id=1, account_id="a", wechat_id="wx-a", display_name="张三", stage="stranger", added_at=NOW
    )
    text = undeliverable(event.row, customer, event.reason, event.unsent)
    assert "只发出了一部分：前面的文字已发出，后面的文件「购车避坑指南.pdf」没有发出（" in text, text
    assert "不用整条重发" in text
    assert "upload rejected" not in text and "file too large" not in text


async def test_an_attachment_cut_off_midway_is_reported_as_the_part_in_doubt(db: Database) -> None:
    """After a crash while the attachment was going out, the text is known to have arrived: the
    rep hears that only the attachment may be missing."""
    platform = Platform(die_on_attachment=True)
    with pytest.raises(Crash):
        await dispatcher(db, platform).run_due()

    class Doubts:
        def __init__(self) -> None:
            self.heard: list[tuple[str, str]] = []

        async def in_doubt(
            self, session: AsyncSession, row: ScheduledMessage, reason: str, unsent: str = ""
        ) -> None:
            self.heard.append((reason, unsent))

    restarted = dispatcher(db, platform)
    restarted.doubts = doubts = Doubts()
    await restarted.recover()
    [(_reason, unsent)] = doubts.heard
    assert unsent == "文件「购车避坑指南.pdf」"
