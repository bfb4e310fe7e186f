"""The bench's floor service (tools/bench_floor.py) on the real system: every
ping is answered through the gateway, and with storing on, each one is a row
committed to the system's database (SQLite or PostgreSQL, by `--db`) before
its answer."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from core.db import make_engine
from tools.bench_calls import WARM_UP_PINGS, floor_service, measure_floor
from tools.bench_floor import create_table
from tools.stack import Stack

pytestmark = pytest.mark.anyio

PINGS = 40


def _rows(stack: Stack) -> int:
    engine = make_engine(stack.config.database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM bench_floor")).scalar_one())
    finally:
        engine.dispose()


async def test_the_floor_service_answers_each_ping_after_committing_it(stack: Stack) -> None:
    with floor_service(stack, store=True):
        before = _rows(stack)
        figures = await measure_floor(stack, 200, "db", count=PINGS)
    assert len(figures.latencies_ms) == PINGS
    assert all(latency > 0 for latency in figures.latencies_ms)
    assert _rows(stack) == before + PINGS + WARM_UP_PINGS
    assert figures.label == "floor: service + row in db, 200/s"


async def test_the_answering_floor_service_stores_nothing(stack: Stack) -> None:
    create_table(stack.config.database_url)
    before = _rows(stack)
    with floor_service(stack, store=False):
        figures = await measure_floor(stack, 200, None, count=PINGS)
    assert len(figures.latencies_ms) == PINGS
    assert _rows(stack) == before
