"""PostgreSQL's fast path for a batch of plain text messages: one round trip.

The generic path (store.py) takes five round trips per batch (BEGIN, lock and
read, insert, move last_seq, COMMIT); at ~0.3 ms each on an asyncio driver
they were most of the latency. Here one statement, in autocommit, does it all:
check membership, lock the conversations (sorted), hand out seqs in batch order,
insert, move `last_seq`, record deliveries, and return each stored message's seq,
members and away members (store._AWAY's rule). The invariants are those of
store.py: the row lock serialises every writer of a conversation, so seqs stay
gap-free across instances.

It declines (returns None, nothing written) when a batch holds media or
replies, and fails as a whole on a re-send (the unique constraint): the caller
then takes the generic path, which knows every rule. Items it leaves out (not a
member, unknown conversation) were not written either; the generic path then
decides them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

from core.ids import new_id

_STORE_TEXTS = text("""
WITH want AS (
    SELECT * FROM unnest(
        CAST(:ids AS text[]), CAST(:conv_ids AS text[]), CAST(:sender_ids AS text[]),
        CAST(:texts AS text[]), CAST(:client_ids AS text[]), CAST(:ords AS int[])
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
    SET last_seq = l.last_seq + counts.n, last_message_at = :now
    FROM locked l JOIN counts ON counts.conv_id = l.id
    WHERE c.id = l.id
    RETURNING c.id, l.last_seq AS base
),
inserted AS (
    INSERT INTO message (id, conv_id, seq, sender_id, kind, text, media_id, reply_to,
                         client_msg_id, created_at, delivered)
    SELECT a.id, a.conv_id, b.base + a.k, a.sender_id, 'text', a.text, NULL, NULL,
           a.client_msg_id, :now, false
    FROM allowed a JOIN bumped b ON b.id = a.conv_id
    RETURNING id, conv_id, seq
),
marked AS (
    UPDATE message SET delivered = true WHERE id = ANY(CAST(:marks AS text[]))
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
""")


def applies(engine: Engine, items: Sequence[Any]) -> bool:
    return engine.dialect.name == "postgresql" and all(
        item.body.kind == "text" and item.body.media_id is None and item.body.reply_to is None
        for item in items
    )


def store_texts(
    engine: Engine, items: Sequence[Any], marks: Sequence[str], now: datetime
) -> tuple[list[str], dict[str, tuple[int, list[str], list[str]]]]:
    """Write what can be written; returns the ids given to the items, in order,
    and {id: (seq, member ids, away member ids)} for those stored. Raises IntegrityError on a
    re-send (nothing written)."""
    ids = [new_id("m_") for _ in items]
    params = {
        "ids": ids,
        "conv_ids": [item.conv_id for item in items],
        "sender_ids": [item.sender_id for item in items],
        "texts": [item.body.text for item in items],
        "client_ids": [item.body.client_msg_id for item in items],
        "ords": list(range(len(items))),
        "marks": list(marks),
        "now": now,
    }
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        rows = conn.execute(_STORE_TEXTS, params).all()
    return ids, {row.id: (row.seq, list(row.member_ids), list(row.away_ids)) for row in rows}
