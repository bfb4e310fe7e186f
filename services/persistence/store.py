"""Storing messages and read receipts: the database half of the messaging pipeline.

Everything here is synchronous; the persistence service runs it on its event
loop (services/persistence/writer.py), the API in its thread pool. One
transaction stores a whole batch:

1. lock the batch's conversation rows (sorted, so two writers never deadlock);
   every writer of a conversation, in any process, queues behind that lock, so
   `seq` is handed out gap-free and duplicates cannot race;
2. read members, earlier copies (by client_msg_id), media and reply targets;
3. decide each item in order, insert, move `last_seq`, commit.

Nothing is published from here: callers deliver only what `store_batch` returned,
i.e. after the commit (names ending in `_after_commit` elsewhere say so).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import BindParameter

from bridge.wire.messaging import MediaInfo, SendMessage, StoredMessage
from core.ids import new_id
from core.models import Conversation, Device, Media, Member, Message
from core.timefmt import to_wire, utcnow
from services.persistence import store_pg

conversation_t = Conversation.__table__  # type: ignore[attr-defined]
member_t = Member.__table__  # type: ignore[attr-defined]
message_t = Message.__table__  # type: ignore[attr-defined]
media_t = Media.__table__  # type: ignore[attr-defined]
device_t = Device.__table__  # type: ignore[attr-defined]

ORPHANED_AFTER = timedelta(seconds=1)
# The hot path's statements, built once: constructing a statement and its cache
# key costs more CPU than running it on a local database.
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_LOCK_WITH_MEMBERS = (
    select(conversation_t.c.id, conversation_t.c.last_seq, member_t.c.user_id)
    .join(member_t, member_t.c.conv_id == conversation_t.c.id, isouter=True)
    .where(conversation_t.c.id.in_(_IDS))
    .order_by(conversation_t.c.id)
    .with_for_update(of=conversation_t)
)
_MEMBERS = select(member_t.c.conv_id, member_t.c.user_id).where(member_t.c.conv_id.in_(_IDS))
_MEDIA = select(media_t).where(media_t.c.id.in_(_IDS))
_REPLY_TARGETS = select(message_t.c.id, message_t.c.conv_id).where(message_t.c.id.in_(_IDS))
_INSERT_MESSAGES = message_t.insert()
_MOVE_LAST_SEQ = (
    update(conversation_t)
    .where(conversation_t.c.id == bindparam("b_id"))
    .values(last_seq=bindparam("b_seq"), last_message_at=bindparam("b_at"))
)
_MARK_DELIVERED = update(message_t).where(message_t.c.id.in_(_IDS)).values(delivered=True)


def _devices_of_member(*conditions: Any) -> Any:
    return (
        select(device_t.c.id)
        .where(
            device_t.c.user_id == member_t.c.user_id, device_t.c.revoked_at.is_(None), *conditions
        )
        .exists()
    )


# Members a push may be for: the conversation not muted, a push token on some
# device, no device online. The same rule as services/push/store.py, read in the
# storing transaction so that a message among online users costs the push
# service nothing (no notice, no query); push checks again before it sends.
_AWAY = select(member_t.c.conv_id, member_t.c.user_id).where(
    member_t.c.conv_id.in_(_IDS),
    member_t.c.muted.is_(False),
    _devices_of_member(device_t.c.push_token.is_not(None)),
    ~_devices_of_member(device_t.c.online.is_(True)),
)

MEDIA_KIND_FOR_MESSAGE = {"image": "image", "audio": "audio"}  # "file" takes any media


def media_url(media_id: str) -> str:
    return f"/v1/media/{media_id}"


@dataclass(frozen=True, slots=True)
class SendItem:
    conv_id: str
    sender_id: str
    body: SendMessage
    # The sender is over their message rate: refused `rate_limited`, unless it
    # is a re-send of a message already stored (that one is acked as before).
    over_limit: bool = False


@dataclass(frozen=True, slots=True)
class Stored:
    message: StoredMessage
    member_ids: tuple[str, ...]
    # Members away when it was stored (see `_AWAY`): the push service's
    # candidates. None: not looked up, every other member is a candidate.
    away_ids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Duplicate:
    message: StoredMessage
    # Members to deliver to after all: the original was stored but never delivered.
    redeliver_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    code: str
    message: str


Outcome = Stored | Duplicate | Rejected


def media_info(row: Any) -> MediaInfo:
    return MediaInfo(
        media_id=row.id,
        mime=row.mime,
        size=row.size,
        url=media_url(row.id),
        name=row.name,
        width=row.width,
        height=row.height,
        duration_ms=row.duration_ms,
    )


def stored_message(row: Any, media: MediaInfo | None) -> StoredMessage:
    return StoredMessage(
        id=row.id,
        conv_id=row.conv_id,
        seq=row.seq,
        sender_id=row.sender_id,
        kind=row.kind,
        text=row.text,
        media=media,
        reply_to=row.reply_to,
        client_msg_id=row.client_msg_id,
        created_at=to_wire(row.created_at),
    )


def away_members(conn: Connection, conv_ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
    away: dict[str, list[str]] = defaultdict(list)
    for row in conn.execute(_AWAY, {"ids": list(conv_ids)}):
        away[row.conv_id].append(row.user_id)
    return {conv_id: tuple(users) for conv_id, users in away.items()}


def members_of(conn: Connection, conv_ids: Iterable[str]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = defaultdict(list)
    for row in conn.execute(_MEMBERS, {"ids": list(conv_ids)}):
        members[row.conv_id].append(row.user_id)
    return members


def _media_by_id(conn: Connection, media_ids: Sequence[str]) -> dict[str, Any]:
    if not media_ids:
        return {}
    return {row.id: row for row in conn.execute(_MEDIA, {"ids": list(media_ids)})}


def load_messages(
    conn: Connection, where: Any, *, order_desc: bool = False, limit: int | None = None
) -> list[StoredMessage]:
    """Messages matching `where`, with their media, as wire models."""
    order = message_t.c.seq.desc() if order_desc else message_t.c.seq
    query = select(message_t).where(where).order_by(order)
    if limit is not None:
        query = query.limit(limit)
    rows = list(conn.execute(query))
    media = _media_by_id(conn, sorted({row.media_id for row in rows if row.media_id}))
    return [
        stored_message(row, media_info(media[row.media_id]) if row.media_id else None)
        for row in rows
    ]


def store_batch(
    engine: Engine, items: Sequence[SendItem], mark_delivered_ids: Sequence[str] = ()
) -> list[Outcome]:
    """Store a batch in one transaction; one outcome per item, in order.

    On PostgreSQL a batch of plain texts takes store_pg's one statement. The
    common case (no re-sends) takes one read: re-sends are found by the unique
    constraint, which rolls the attempt back, and the batch is then decided
    again with the earlier copies read first. `mark_delivered_ids` rides along
    in the same transaction (see `mark_delivered`).
    """
    if engine.dialect.name == "postgresql" and fast_path_applies(items):
        now = utcnow()
        try:
            ids, stored = store_pg.store_texts(engine, items, mark_delivered_ids, now)
        except IntegrityError:
            pass  # A re-send: the statement failed whole, marks included; on with them.
        else:
            outcomes, left_out = fast_outcomes(items, ids, stored, now)
            if left_out:
                return merge_decided(outcomes, decide_left_out(engine, left_out))
            return [o for o in outcomes if o is not None]
    return store_generic(engine, items, mark_delivered_ids)


def store_generic(
    engine: Engine, items: Sequence[SendItem], mark_delivered_ids: Sequence[str] = ()
) -> list[Outcome]:
    """`store_batch` by the path that knows every rule (media, replies, re-sends)."""
    over_limit = any(item.over_limit for item in items)
    try:
        # An item over the limit may be a re-send: its earlier copy must be known.
        return _store_tx(engine, items, mark_delivered_ids, look_for_copies=over_limit)
    except IntegrityError:
        return _store_tx(engine, items, mark_delivered_ids, look_for_copies=True)


def _store_tx(
    engine: Engine, items: Sequence[SendItem], marks: Sequence[str], *, look_for_copies: bool
) -> list[Outcome]:
    with engine.begin() as conn:
        # Marks first: a re-send in this batch must see its original as delivered.
        _mark_delivered_in(conn, marks)
        return _store_in(conn, items, look_for_copies=look_for_copies)


def fast_path_applies(items: Sequence[SendItem]) -> bool:
    """store_pg's statement takes plain texts, none over the rate limit (such an
    item may be a re-send, whose earlier copy must be read first)."""
    return not any(item.over_limit for item in items) and store_pg.applies(items)


def fast_outcomes(
    items: Sequence[SendItem], ids: Sequence[str], stored: store_pg.Stored, now: datetime
) -> tuple[list[Outcome | None], list[SendItem]]:
    """The outcomes of store_pg's statement, in order; None for an item it left
    out (not a member, or no such conversation), listed second for
    `decide_left_out`."""
    outcomes: list[Outcome | None] = []
    left_out: list[SendItem] = []
    for item, message_id in zip(items, ids, strict=True):
        if message_id not in stored:
            outcomes.append(None)
            left_out.append(item)
            continue
        seq, member_ids, away_ids = stored[message_id]
        message = StoredMessage(
            id=message_id,
            conv_id=item.conv_id,
            seq=seq,
            sender_id=item.sender_id,
            kind="text",
            text=item.body.text,
            media=None,
            reply_to=None,
            client_msg_id=item.body.client_msg_id,
            created_at=to_wire(now),
        )
        outcomes.append(Stored(message, tuple(member_ids), tuple(away_ids)))
    return outcomes, left_out


def decide_left_out(engine: Engine, left_out: Sequence[SendItem]) -> list[Outcome]:
    """The generic path says why the fast statement left these out."""
    return _store_tx(engine, left_out, (), look_for_copies=True)


def merge_decided(outcomes: Sequence[Outcome | None], decided: Sequence[Outcome]) -> list[Outcome]:
    remaining = iter(decided)
    return [o if o is not None else next(remaining) for o in outcomes]


def _lock_with_members(
    conn: Connection, conv_ids: Sequence[str]
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Lock the conversations (sorted: no deadlocks) and read their members, at once."""
    rows = conn.execute(_LOCK_WITH_MEMBERS, {"ids": list(conv_ids)})
    last_seq: dict[str, int] = {}
    members: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        last_seq[row.id] = row.last_seq
        if row.user_id is not None:
            members[row.id].append(row.user_id)
    return last_seq, members


def _store_in(
    conn: Connection, items: Sequence[SendItem], *, look_for_copies: bool
) -> list[Outcome]:
    conv_ids = sorted({item.conv_id for item in items})
    last_seq, members = _lock_with_members(conn, conv_ids)
    away = away_members(conn, conv_ids)
    earlier = _earlier_copies(conn, items) if look_for_copies else {}
    media = _media_by_id(conn, sorted({i.body.media_id for i in items if i.body.media_id}))
    reply_targets = _reply_targets(conn, items)
    now = utcnow()

    outcomes: list[Outcome] = []
    new_rows: list[dict[str, Any]] = []
    for item in items:
        key = (item.conv_id, item.sender_id, item.body.client_msg_id)
        outcome = _decide(item, last_seq, members, earlier, media, reply_targets)
        if outcome is not None:
            outcomes.append(outcome)
            continue
        last_seq[item.conv_id] += 1
        row = {
            "id": new_id("m_"),
            "conv_id": item.conv_id,
            "seq": last_seq[item.conv_id],
            "sender_id": item.sender_id,
            "kind": item.body.kind,
            "text": item.body.text,
            "media_id": item.body.media_id,
            "reply_to": item.body.reply_to,
            "client_msg_id": item.body.client_msg_id,
            "created_at": now,
            "delivered": False,
        }
        new_rows.append(row)
        media_row = media.get(item.body.media_id) if item.body.media_id else None
        message = stored_message(_Row(row), media_info(media_row) if media_row else None)
        # A second copy later in this batch is a duplicate (and needs no delivery).
        earlier[key] = _Copy(message, delivered=True)
        outcomes.append(Stored(message, tuple(members[item.conv_id]), away.get(item.conv_id, ())))

    if new_rows:
        conn.execute(_INSERT_MESSAGES, new_rows)
        touched = {row["conv_id"] for row in new_rows}
        conn.execute(
            _MOVE_LAST_SEQ,
            [{"b_id": c, "b_seq": last_seq[c], "b_at": now} for c in sorted(touched)],
        )
    return outcomes


@dataclass(frozen=True, slots=True)
class _Copy:
    message: StoredMessage
    delivered: bool  # or presumed in delivery by a live process


class _Row:
    """Attribute access over a dict, so new rows and fetched rows share one mapper."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _decide(
    item: SendItem,
    last_seq: dict[str, int],
    members: dict[str, list[str]],
    earlier: dict[tuple[str, str, str], _Copy],
    media: dict[str, Any],
    reply_targets: dict[str, str],
) -> Outcome | None:
    """Why this item is not stored, or None when it should be."""
    body = item.body
    if item.conv_id not in last_seq:
        return Rejected("unknown_conversation", "no such conversation")
    if item.sender_id not in members[item.conv_id]:
        return Rejected("not_member", "you are not a member of this conversation")
    copy = earlier.get((item.conv_id, item.sender_id, body.client_msg_id))
    if copy is not None:
        # Not yet delivered: whoever stored it died before delivering (the broker
        # handed us its message again), so this copy is delivered now.
        redeliver = () if copy.delivered else tuple(members[item.conv_id])
        return Duplicate(copy.message, redeliver)
    if item.over_limit:
        return Rejected("rate_limited", "too many messages; slow down")
    if body.media_id is not None:
        row = media.get(body.media_id)
        if row is None or row.uploader_id != item.sender_id:
            return Rejected("unknown_media", "no such media of yours")
        wanted = MEDIA_KIND_FOR_MESSAGE.get(body.kind)
        if wanted is not None and row.kind != wanted:
            return Rejected("invalid_payload", f"media is {row.kind}, not {body.kind}")
    if body.reply_to is not None and reply_targets.get(body.reply_to) != item.conv_id:
        return Rejected("invalid_payload", "reply_to is not a message of this conversation")
    return None


def _earlier_copies(
    conn: Connection, items: Sequence[SendItem]
) -> dict[tuple[str, str, str], _Copy]:
    conv_ids = sorted({i.conv_id for i in items})
    client_ids = sorted({i.body.client_msg_id for i in items})
    where = and_(message_t.c.conv_id.in_(conv_ids), message_t.c.client_msg_id.in_(client_ids))
    # Undelivered and older than this: its process died before delivering. A
    # younger one is most likely still being delivered by a live instance.
    orphaned_before = utcnow() - ORPHANED_AFTER
    delivered = {
        row.id: row.delivered or row.created_at > orphaned_before
        for row in conn.execute(
            select(message_t.c.id, message_t.c.delivered, message_t.c.created_at).where(where)
        )
    }
    return {
        (m.conv_id, m.sender_id, m.client_msg_id): _Copy(m, delivered[m.id])
        for m in load_messages(conn, where)
    }


def _reply_targets(conn: Connection, items: Sequence[SendItem]) -> dict[str, str]:
    ids = sorted({i.body.reply_to for i in items if i.body.reply_to})
    if not ids:
        return {}
    return {row.id: row.conv_id for row in conn.execute(_REPLY_TARGETS, {"ids": ids})}


# --- delivery bookkeeping (the outbox) -------------------------------------------------


def mark_delivered(engine: Engine, message_ids: Sequence[str]) -> None:
    """Record that every member's copy was accepted by the broker.

    Losing this write only causes a harmless second delivery (clients drop a
    `seq` they already have), so PostgreSQL may skip the WAL flush for it.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL synchronous_commit = off"))
        _mark_delivered_in(conn, message_ids)


def _mark_delivered_in(conn: Connection, message_ids: Sequence[str]) -> None:
    if message_ids:
        conn.execute(_MARK_DELIVERED, {"ids": list(message_ids)})


def undelivered(engine: Engine, older_than: timedelta, limit: int = 500) -> list[Stored]:
    """Messages committed but not yet delivered (a process died in between)."""
    cutoff: datetime = utcnow() - older_than
    with engine.begin() as conn:
        where = and_(message_t.c.delivered.is_(False), message_t.c.created_at < cutoff)
        messages = load_messages(conn, where, limit=limit)
        members = members_of(conn, {m.conv_id for m in messages})
    return [Stored(m, tuple(members[m.conv_id])) for m in messages]


# --- read receipts -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadMoved:
    seq: int
    member_ids: tuple[str, ...]


def apply_read(engine: Engine, conv_id: str, user_id: str, seq: int) -> ReadMoved | None:
    """Move the reader's pointer forward (clamped to the last message).

    Returns None when nothing changed: not a member, or not a step forward.
    """
    with engine.begin() as conn:
        last = conn.execute(
            select(conversation_t.c.last_seq).where(conversation_t.c.id == conv_id)
        ).scalar_one_or_none()
        if last is None:
            return None
        target = min(seq, last)
        moved = conn.execute(
            update(member_t)
            .where(
                member_t.c.conv_id == conv_id,
                member_t.c.user_id == user_id,
                member_t.c.last_read_seq < target,
            )
            .values(last_read_seq=target)
        )
        if moved.rowcount != 1:
            return None
        members = members_of(conn, [conv_id])[conv_id]
    return ReadMoved(target, tuple(members))
