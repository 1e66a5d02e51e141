"""Persistence: SQLModel tables, async repositories and Alembic migrations."""
