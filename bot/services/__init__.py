"""Use cases: each opens its own transaction and talks to the platform only through a Transport."""
