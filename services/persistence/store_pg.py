"""PostgreSQL's fast path for a batch of plain text messages: one round trip.

The generic path (store.py) takes five round trips per batch (BEGIN, lock and
read, insert, move last_seq, COMMIT); at ~0.3 ms each on an asyncio driver
they were most of the latency. Here one statement, in autocommit, does it all:
check membership, lock the conversations (sorted), hand out seqs in batch order,
insert, move `last_seq`, record deliveries, and return each stored message's seq,
members and away members (store._AWAY's rule). The invariants are those of
store.py: the row lock serialises every writer of a conversation, so seqs stay
gap-free across instances.

It applies only to batches of plain texts (no media, no replies), and fails
as a whole on a re-send (the unique constraint): the caller then takes the
generic path, which knows every rule. Items it leaves out (not a member, unknown
conversation) were not written either; the generic path then decides them.

Two ways to run it, one statement: the persistence service through its own
connection (core/pg_line.py: the hot path), the API's HTTP send through
SQLAlchemy's engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, LiteralString

from sqlalchemy import Engine

from core.ids import new_id
from core.pg_line import PgLine

STORE_TEXTS: LiteralString = """
WITH want AS (
    SELECT * FROM unnest(
        CAST(%(ids)s AS text[]), CAST(%(conv_ids)s AS text[]), CAST(%(sender_ids)s AS text[]),
        CAST(%(texts)s AS text[]), CAST(%(client_ids)s AS text[]), CAST(%(ords)s AS int[])
    ) AS w(id, conv_id, sender_id, text, client_msg_id, ord)
),
allowed AS (
    SELECT w.*, row_number() OVER (PARTITION BY w.conv_id ORDER BY w.ord) AS k
    FROM want w
    JOIN member mb ON mb.conv_id = w.conv_id AND mb.user_id = w.sender_id
),
counts AS (
    SELECT conv_id, count(*) AS n FROM allowed GROUP BY conv_id
),
locked AS (
    SELECT c.id, c.last_seq FROM conversation c
    WHERE c.id IN (SELECT conv_id FROM counts)
    ORDER BY c.id
    FOR UPDATE
),
bumped AS (
    UPDATE conversation c
    SET last_seq = l.last_seq + counts.n, last_message_at = %(now)s
    FROM locked l JOIN counts ON counts.conv_id = l.id
    WHERE c.id = l.id
    RETURNING c.id, l.last_seq AS base
),
inserted AS (
    INSERT INTO message (id, conv_id, seq, sender_id, kind, text, media_id, reply_to,
                         client_msg_id, created_at, delivered)
    SELECT a.id, a.conv_id, b.base + a.k, a.sender_id, 'text', a.text, NULL, NULL,
           a.client_msg_id, %(now)s, false
    FROM allowed a JOIN bumped b ON b.id = a.conv_id
    RETURNING id, conv_id, seq
),
marked AS (
    UPDATE message SET delivered = true WHERE id = ANY(CAST(%(marks)s AS text[]))
)
SELECT i.id, i.seq,
       ARRAY(SELECT mb.user_id FROM member mb WHERE mb.conv_id = i.conv_id) AS member_ids,
       ARRAY(
           SELECT mb.user_id FROM member mb
           WHERE mb.conv_id = i.conv_id AND NOT mb.muted
             AND EXISTS (SELECT 1 FROM device d WHERE d.user_id = mb.user_id
                         AND d.revoked_at IS NULL AND d.push_token IS NOT NULL)
             AND NOT EXISTS (SELECT 1 FROM device d WHERE d.user_id = mb.user_id
                             AND d.revoked_at IS NULL AND d.online)
       ) AS away_ids
FROM inserted i
"""

Stored = dict[str, tuple[int, list[str], list[str]]]
"""{message id: (seq, member ids, away member ids)} for the items stored."""


def applies(items: Sequence[Any]) -> bool:
    return all(
        item.body.kind == "text" and item.body.media_id is None and item.body.reply_to is None
        for item in items
    )


def params_for(
    items: Sequence[Any], marks: Sequence[str], now: datetime
) -> tuple[list[str], dict[str, Any]]:
    ids = [new_id("m_") for _ in items]
    return ids, {
        "ids": ids,
        "conv_ids": [item.conv_id for item in items],
        "sender_ids": [item.sender_id for item in items],
        "texts": [item.body.text for item in items],
        "client_ids": [item.body.client_msg_id for item in items],
        "ords": list(range(len(items))),
        "marks": list(marks),
        "now": now,
    }


def _stored(rows: Sequence[Any]) -> Stored:
    return {row[0]: (row[1], list(row[2]), list(row[3])) for row in rows}


def store_texts(
    engine: Engine, items: Sequence[Any], marks: Sequence[str], now: datetime
) -> tuple[list[str], Stored]:
    """Write what can be written; returns the ids given to the items, in order,
    and what was stored. Raises IntegrityError on a re-send (nothing written)."""
    ids, params = params_for(items, marks, now)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        rows = conn.exec_driver_sql(STORE_TEXTS, params).all()
    return ids, _stored(rows)


async def store_texts_on(
    line: PgLine, items: Sequence[Any], marks: Sequence[str], now: datetime
) -> tuple[list[str], Stored]:
    """`store_texts` on a connection of its own. Raises psycopg's
    IntegrityError on a re-send (nothing written)."""
    ids, params = params_for(items, marks, now)
    return ids, _stored(await line.fetch_all(STORE_TEXTS, params))
