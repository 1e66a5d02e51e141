"""The web app: supervisor dashboard and JSON API (aiohttp + Jinja2, no CDN)."""
