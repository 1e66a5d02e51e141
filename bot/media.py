"""Attachments templates may send: images, files, link cards and mini-program cards.

They live in ``scripts_templates/media/``: ``media.toml`` names each one (a key templates use with
``attach("gift")``) and says what it is; images and files sit beside it. Everything is checked by
``salesbot check`` (a missing file, a file too large for WeChat, an image that is not one, a link
without a title), each error naming the file and the key, so nothing fails on the day it is sent.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bot.errors import TemplateError

MEDIA_FOLDER = "media"
MANIFEST = "media.toml"

# WeChat's own limits are larger (files up to 1 GB on phones), but puppets upload through the
# service in one message: keep attachments small enough to go out reliably
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_FILE_BYTES = 20 * 1024 * 1024

_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_IMAGE_MAGIC = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".gif": (b"GIF87a", b"GIF89a"),
}
_FILE_SUFFIXES = frozenset(
    {".pdf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".txt", ".zip", ".mp4", *_IMAGE_MAGIC}
)


class MediaType(StrEnum):
    IMAGE = "image"
    FILE = "file"
    LINK = "link"
    MINIPROGRAM = "miniprogram"


# how an attachment is named in logs and the outgoing log (a person may read those on the dashboard)
LABELS = {
    MediaType.IMAGE: "图片",
    MediaType.FILE: "文件",
    MediaType.LINK: "链接",
    MediaType.MINIPROGRAM: "小程序",
}

_FIELDS: dict[MediaType, tuple[frozenset[str], frozenset[str]]] = {  # (required, optional) besides type
    MediaType.IMAGE: (frozenset({"file"}), frozenset()),
    MediaType.FILE: (frozenset({"file"}), frozenset()),
    MediaType.LINK: (frozenset({"url", "title"}), frozenset({"description", "thumbnail"})),
    MediaType.MINIPROGRAM: (
        frozenset({"appid", "username", "title", "page_path"}),
        frozenset({"description", "thumbnail", "icon"}),
    ),
}


@dataclass(frozen=True)
class Attachment:
    """One entry of the media library: what the transport sends after (or instead of) a text."""

    key: str
    type: MediaType
    path: Path | None = None  # image and file
    url: str = ""  # link
    title: str = ""  # link, mini program
    description: str = ""
    thumbnail: str = ""  # an image URL (link and mini-program cards)
    appid: str = ""  # mini program
    username: str = ""  # mini program: its gh_... id
    page_path: str = ""
    icon: str = ""

    @property
    def name(self) -> str:
        """What the customer sees it called: the file's name, or the card's title."""
        return self.path.name if self.path is not None else self.title

    def describe(self) -> str:
        """A one-line stand-in for the attachment where text is kept (outgoing log, transcripts)."""
        return f"[{LABELS[self.type]}] {self.name}"


class MediaLibrary:
    """The attachments of one templates folder, loaded and checked once."""

    def __init__(self, root: Path, items: dict[str, Attachment]) -> None:
        self.root = root
        self.items = items

    @classmethod
    def load(cls, templates_root: Path) -> MediaLibrary:
        """Read ``media/media.toml`` (none: an empty library) and check every entry."""
        root = templates_root / MEDIA_FOLDER
        manifest = root / MANIFEST
        if not manifest.is_file():
            return cls(root, {})
        try:
            data = tomllib.loads(manifest.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise TemplateError(f"{manifest}: not valid TOML ({exc})") from None
        items = {}
        for key, entry in data.items():
            if not isinstance(entry, dict):
                raise TemplateError(f"{manifest}: [{key}]: expected a table of fields")
            items[key] = _attachment(manifest, root, key, entry)
        return cls(root, items)

    def get(self, key: str) -> Attachment | None:
        return self.items.get(key)

    def manifest(self) -> Path:
        return self.root / MANIFEST


def _attachment(manifest: Path, root: Path, key: str, entry: dict[str, Any]) -> Attachment:
    where = f"{manifest}: [{key}]"
    if not _KEY.match(key):
        raise TemplateError(f"{where}: a key is lower-case letters, digits, - and _ (e.g. gift, proof-1)")
    try:
        kind = MediaType(str(entry.get("type", "")))
    except ValueError:
        known = ", ".join(t.value for t in MediaType)
        raise TemplateError(f"{where}: type must be one of {known}") from None
    required, optional = _FIELDS[kind]
    fields = {k: v for k, v in entry.items() if k != "type"}
    for field, value in fields.items():
        if field not in required | optional:
            raise TemplateError(f"{where}: unknown field '{field}' for {_a(kind)} (fields: {_names(kind)})")
        if not isinstance(value, str) or not value.strip():
            raise TemplateError(f"{where}: {field} must be non-empty text")
    missing = sorted(required - fields.keys())
    if missing:
        raise TemplateError(f"{where}: missing {', '.join(missing)} (fields: {_names(kind)})")
    for field in ("url", "thumbnail", "icon"):
        if field in fields and urlparse(fields[field]).scheme not in ("http", "https"):
            raise TemplateError(f"{where}: {field} must be an http(s) URL")
    path = None
    if "file" in fields:
        path = root / fields["file"]
        # only what sits in the media folder is sent: a "../" or absolute path could send any file
        if not path.resolve().is_relative_to(root.resolve()):
            raise TemplateError(f"{where}: file {fields['file']} must be inside the media folder {root}")
        _check_file(where, path, kind)
    return Attachment(
        key=key,
        type=kind,
        path=path,
        url=fields.get("url", ""),
        title=fields.get("title", ""),
        description=fields.get("description", ""),
        thumbnail=fields.get("thumbnail", ""),
        appid=fields.get("appid", ""),
        username=fields.get("username", ""),
        page_path=fields.get("page_path", ""),
        icon=fields.get("icon", ""),
    )


def _a(kind: MediaType) -> str:
    return f"an {kind}" if kind is MediaType.IMAGE else f"a {kind}"


def _names(kind: MediaType) -> str:
    required, optional = _FIELDS[kind]
    return ", ".join([*sorted(required), *(f"{o} (optional)" for o in sorted(optional))])


def _check_file(where: str, path: Path, kind: MediaType) -> None:
    if not path.is_file():
        raise TemplateError(f"{where}: file {path} not found")
    size = path.stat().st_size
    limit = MAX_IMAGE_BYTES if kind is MediaType.IMAGE else MAX_FILE_BYTES
    if size == 0:
        raise TemplateError(f"{where}: file {path} is empty")
    if size > limit:
        raise TemplateError(
            f"{where}: file {path} is {size / 1024 / 1024:.1f} MB; {_a(kind)} may be at most "
            f"{limit // 1024 // 1024} MB"
        )
    suffix = path.suffix.lower()
    if kind is MediaType.IMAGE:
        magic = _IMAGE_MAGIC.get(suffix)
        if magic is None:
            raise TemplateError(f"{where}: {path.name} is not an image (png, jpg or gif)")
        with path.open("rb") as head:
            start = head.read(8)
        if not start.startswith(magic):
            raise TemplateError(f"{where}: {path.name} does not hold a {suffix[1:]} image")
    elif suffix not in _FILE_SUFFIXES:
        allowed = ", ".join(sorted(s[1:] for s in _FILE_SUFFIXES))
        raise TemplateError(f"{where}: {path.name}: files of this type are not sent (allowed: {allowed})")
