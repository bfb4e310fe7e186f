"""What the database holds for a phase's messages: rows per client message id.

Read straight from the `message` table (the source of truth), not through the
API, so the answer does not depend on the parts under test.
"""

from __future__ import annotations

from collections import Counter

import psycopg

# conv_id first: the unique index (conv_id, sender_id, client_msg_id) serves it.
ROWS_PER_CLIENT_MSG_ID = """
SELECT client_msg_id, count(*)
FROM message
WHERE conv_id = ANY(%(conv_ids)s) AND client_msg_id = ANY(%(client_msg_ids)s)
GROUP BY client_msg_id
"""


async def stored_rows(
    database_url: str, conv_ids: set[str], client_msg_ids: list[str]
) -> Counter[str]:
    """{client_msg_id: rows stored} for these ids (absent: not stored)."""
    if not client_msg_ids:
        return Counter()
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=10) as conn:
        cursor = await conn.execute(
            ROWS_PER_CLIENT_MSG_ID,
            {"conv_ids": sorted(conv_ids), "client_msg_ids": client_msg_ids},
        )
        return Counter({str(cmid): int(count) for cmid, count in await cursor.fetchall()})
