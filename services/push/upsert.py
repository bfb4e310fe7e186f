"""INSERT ... ON CONFLICT DO NOTHING for the dialect at hand (PostgreSQL and
SQLite both have it; SQLAlchemy spells it per dialect)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_new(conn: Connection, table: Table) -> Any:
    """An insert of `table` that skips rows whose key exists already."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()
