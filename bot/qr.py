"""QR codes of login links, as terminal text and as inline SVG (encoded by the ``qrcode`` library).

A puppet that logs in by scanning hands us the code's content (a URL); the rep scans it with the
account's phone, from the terminal or from the dashboard.
"""

from __future__ import annotations

import io
from html import escape

import qrcode

QUIET_ZONE = 2  # modules of white around the code: scanners need it


def _code(data: str) -> qrcode.QRCode:
    code = qrcode.QRCode(border=QUIET_ZONE, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(data)
    code.make(fit=True)
    return code


def qr_text(data: str) -> str:
    """The code in block characters, two modules per line (fits an 80x24 terminal), dark on light."""
    out = io.StringIO()
    _code(data).print_ascii(out=out, invert=True)
    return out.getvalue()


def qr_svg(data: str, label: str) -> str:
    """The code as an inline ``<svg>`` (scales to its box; ``label`` is what a screen reader says)."""
    matrix = _code(data).get_matrix()
    size = len(matrix)
    dark = "".join(f"M{x},{y}h1v1h-1z" for y, row in enumerate(matrix) for x, cell in enumerate(row) if cell)
    return (
        f'<svg class="qr" viewBox="0 0 {size} {size}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg" shape-rendering="crispEdges">'
        f'<rect width="{size}" height="{size}" fill="#fff"/><path d="{dark}" fill="#000"/></svg>'
    )
