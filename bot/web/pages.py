"""The HTML templates every web page renders from (the dashboard, error pages, the simulator).

Its own module so the simulator can render pages without importing the app that mounts it.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

PAGES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html", "j2"])
)
