"""The dashboard's block about logging accounts in: each account's login state and, while one waits
for a scan, its QR code as inline SVG (rendered here, on the server: no script, no CDN)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from bot.qr import qr_svg
from bot.services.reports import ReportService


def login_rows(reports: ReportService) -> list[dict[str, Any]]:
    rows = []
    for row in reports.login_states():
        code = row.pop("qr")
        label = f"{row['nickname']} 的微信登录二维码"
        rows.append({**row, "svg": Markup(qr_svg(code, label)) if code else ""})
    return rows
