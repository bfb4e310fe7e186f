"""Live support over HTTP: tickets for users, the operators' actions, the
supervisors' views (docs/support.md).

Each change is one transaction in services/support_router/store.py; what it
decided is then published (notify.py) and, when it freed a slot or put a ticket
back, the router is woken to walk the queue."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import delete, or_, select

from api.deps import AppState, CurrentUser, StateDep
from api.errors import ApiError
from api.operators import create_operator
from api.routes.messages import send_over_http
from api.schemas import (
    CannedReplyIn,
    OperatorIn,
    OperatorPatch,
    OperatorStatusIn,
    RatingIn,
    TicketCreated,
    TicketIn,
    TransferIn,
)
from bridge.wire.messaging import SendMessage
from bridge.wire.support import CannedReply as CannedReplyOut
from bridge.wire.support import OperatorView, TicketView
from core.db import reading
from core.ids import new_id
from core.models import CannedReply, User
from core.timefmt import utcnow
from services.support_router import store
from services.support_router import views as support_views
from services.support_router.notify import wake_router
from services.support_router.outcome import Conflict, Outcome
from services.support_router.tables import ticket_t

router = APIRouter(prefix="/v1/support", tags=["support"])
canned_t = CannedReply.__table__  # type: ignore[attr-defined]

OPERATOR_ROLES = ("operator", "supervisor")


def _require_operator(user: User) -> None:
    if user.role not in OPERATOR_ROLES:
        raise ApiError(403, "forbidden", "operators only")


def _require_supervisor(user: User) -> None:
    if user.role != "supervisor":
        raise ApiError(403, "forbidden", "supervisors only")


async def _run(state: AppState, func: Any, *args: Any) -> Any:
    """A store call in the thread pool, its `Conflict` as the API's error."""
    try:
        return await run_in_threadpool(func, state.engine, *args)
    except Conflict as conflict:
        raise ApiError(conflict.status, conflict.code, conflict.message) from None


async def _view(state: AppState, ticket_id: str) -> TicketView:
    views = await run_in_threadpool(
        support_views.views_by_id, state.engine, [ticket_id], state.support.rules, utcnow()
    )
    return views[ticket_id]


# --- tickets ---------------------------------------------------------------------------


@router.post("/tickets", status_code=status.HTTP_201_CREATED)
async def open_ticket(
    body: TicketIn, user: CurrentUser, state: StateDep, background: BackgroundTasks
) -> TicketCreated:
    """Opened, and assigned at once if nobody waits and an operator is free;
    otherwise queued, and the router is woken to tell the user their place."""
    opened = await _run(
        state,
        store.open_ticket,
        user.id,
        body.subject,
        body.priority,
        utcnow(),
        state.support.rules,
    )
    if opened.position is None:
        # Assigned on arrival: the user hears it now; the operator's desk and
        # the live views follow after the answer.
        await state.support.tell_users(opened.outcome)
        background.add_task(state.support.publish_rest, opened.outcome)
    else:
        # Queued: the router tells the user their place (and routes it).
        wake_router(state.mqtt, "queued")
    if body.text is not None:
        first = SendMessage(client_msg_id=f"ticket-{opened.ticket_id}", kind="text", text=body.text)
        await send_over_http(state, opened.conv_id, user.id, first)
    return TicketCreated(
        ticket_id=opened.ticket_id,
        conv_id=opened.conv_id,
        status="queued" if opened.position is not None else "assigned",
        position=opened.position,
    )


@router.get("/tickets")
async def list_tickets(
    user: CurrentUser,
    state: StateDep,
    scope: Annotated[Literal["own", "mine", "queue", "all"], Query()] = "own",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, list[TicketView]]:
    """`own`: the caller's tickets as a user. Operators: `mine` (assigned to
    me, and those I closed), `queue` (waiting, in order), `all` (supervisors)."""
    if scope != "own":
        _require_operator(user)
    if scope == "all":
        _require_supervisor(user)
    if scope == "queue":
        views = await run_in_threadpool(
            support_views.queue_views, state.engine, state.support.rules, utcnow()
        )
        return {"tickets": views}
    where: Any = {
        "own": ticket_t.c.user_id == user.id,
        "mine": ticket_t.c.operator_id == user.id,
        "all": ticket_t.c.id.is_not(None),
    }[scope]

    def read(engine: Any) -> list[TicketView]:
        with reading(engine) as conn:
            return support_views.ticket_views(
                conn, where, state.support.rules, utcnow(), limit=limit
            )

    return {"tickets": await run_in_threadpool(read, state.engine)}


@router.get("/tickets/{ticket_id}")
async def get_ticket(ticket_id: str, user: CurrentUser, state: StateDep) -> dict[str, Any]:
    views = await run_in_threadpool(
        support_views.views_by_id, state.engine, [ticket_id], state.support.rules, utcnow()
    )
    view = views.get(ticket_id)
    operator = user.role in OPERATOR_ROLES
    if view is None or not (operator or view.user.id == user.id):
        raise ApiError(404, "not_found", "no such ticket")
    found: dict[str, Any] = view.model_dump()
    if operator:
        found["events"] = await run_in_threadpool(
            support_views.ticket_events, state.engine, ticket_id
        )
    return found


@router.post("/tickets/{ticket_id}/take")
async def take(ticket_id: str, user: CurrentUser, state: StateDep) -> TicketView:
    _require_operator(user)
    outcome = await _run(
        state, store.claim, ticket_id, user.id, utcnow(), state.support.rules, "taken"
    )
    await state.support.publish(outcome)
    return await _view(state, ticket_id)


@router.post("/tickets/{ticket_id}/transfer")
async def transfer(
    ticket_id: str, body: TransferIn, user: CurrentUser, state: StateDep
) -> TicketView:
    _require_operator(user)
    outcome = await _run(
        state, store.transfer, ticket_id, user, body.operator_id, utcnow(), state.support.rules
    )
    await state.support.publish(outcome)
    return await _view(state, ticket_id)


@router.post("/tickets/{ticket_id}/close")
async def close(ticket_id: str, user: CurrentUser, state: StateDep) -> TicketView:
    outcome = await _run(state, store.close, ticket_id, user, utcnow())
    await state.support.publish(outcome)
    return await _view(state, ticket_id)


@router.post("/tickets/{ticket_id}/rating")
async def rate(ticket_id: str, body: RatingIn, user: CurrentUser, state: StateDep) -> TicketView:
    await _run(state, store.rate, ticket_id, user, body.score, body.comment)
    await state.support.publish(Outcome(floor_changed=True))
    return await _view(state, ticket_id)


# --- operators ---------------------------------------------------------------------------


@router.get("/operators/me")
async def me(user: CurrentUser, state: StateDep) -> OperatorView:
    _require_operator(user)
    view: OperatorView = await _run(state, support_views.operator_view, user.id)
    return view


@router.put("/operators/me/status")
async def set_status(body: OperatorStatusIn, user: CurrentUser, state: StateDep) -> OperatorView:
    _require_operator(user)
    outcome = await _run(state, store.set_status, user.id, body.status, utcnow())
    await state.support.publish(outcome)
    view: OperatorView = await _run(state, support_views.operator_view, user.id)
    return view


@router.get("/operators")
async def operators(user: CurrentUser, state: StateDep) -> dict[str, list[OperatorView]]:
    """Every operator with status and load: colleagues to transfer a chat to."""
    _require_operator(user)
    return {"operators": await run_in_threadpool(support_views.operator_views, state.engine)}


@router.post("/operators", status_code=status.HTTP_201_CREATED)
async def add_operator(body: OperatorIn, user: CurrentUser, state: StateDep) -> OperatorView:
    _require_supervisor(user)
    operator_id = await run_in_threadpool(
        lambda: create_operator(
            state.engine,
            username=body.username,
            password=body.password,
            display_name=body.display_name,
            capacity=body.capacity or state.settings.support_default_capacity,
            supervisor=body.supervisor,
        )
    )
    await state.support.publish(Outcome(floor_changed=True))
    view: OperatorView = await _run(state, support_views.operator_view, operator_id)
    return view


@router.patch("/operators/{operator_id}")
async def change_operator(
    operator_id: str, body: OperatorPatch, user: CurrentUser, state: StateDep
) -> OperatorView:
    _require_supervisor(user)
    outcome = await _run(state, store.set_capacity, operator_id, body.capacity)
    await state.support.publish(outcome)
    view: OperatorView = await _run(state, support_views.operator_view, operator_id)
    return view


@router.get("/overview")
async def overview(user: CurrentUser, state: StateDep) -> dict[str, Any]:
    """The supervisor's floor: every operator's status and load, the queue, waits."""
    _require_supervisor(user)
    now = utcnow()
    return {
        "operators": await run_in_threadpool(support_views.operator_views, state.engine),
        "queue": await run_in_threadpool(
            support_views.queue_views, state.engine, state.support.rules, now
        ),
        "stats": await run_in_threadpool(support_views.wait_stats, state.engine, now),
    }


# --- canned replies ---------------------------------------------------------------------------


def _reply_out(row: Any) -> CannedReplyOut:
    return CannedReplyOut(id=row.id, title=row.title, text=row.text, shared=row.shared)


@router.get("/canned-replies")
async def canned_replies(user: CurrentUser, state: StateDep) -> dict[str, list[CannedReplyOut]]:
    """The caller's own replies and the shared ones, by title."""
    _require_operator(user)

    def read(engine: Any) -> list[CannedReplyOut]:
        with reading(engine) as conn:
            rows = conn.execute(
                select(canned_t)
                .where(or_(canned_t.c.owner_id == user.id, canned_t.c.shared.is_(True)))
                .order_by(canned_t.c.title)
            )
            return [_reply_out(row) for row in rows]

    return {"replies": await run_in_threadpool(read, state.engine)}


@router.post("/canned-replies", status_code=status.HTTP_201_CREATED)
async def add_canned_reply(
    body: CannedReplyIn, user: CurrentUser, state: StateDep
) -> CannedReplyOut:
    _require_operator(user)
    if body.shared:
        _require_supervisor(user)
    reply = CannedReply(
        id=new_id("r_"), owner_id=user.id, shared=body.shared, title=body.title, text=body.text
    )

    def insert(engine: Any) -> CannedReplyOut:
        with engine.begin() as conn:
            conn.execute(canned_t.insert().values(**reply.model_dump()))
        return _reply_out(reply)

    created: CannedReplyOut = await run_in_threadpool(insert, state.engine)
    return created


@router.delete("/canned-replies/{reply_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_canned_reply(reply_id: str, user: CurrentUser, state: StateDep) -> Response:
    _require_operator(user)

    def remove(engine: Any) -> None:
        with engine.begin() as conn:
            row = conn.execute(select(canned_t).where(canned_t.c.id == reply_id)).first()
            mine = row is not None and (
                row.owner_id == user.id or (row.shared and user.role == "supervisor")
            )
            if not mine:
                raise ApiError(404, "not_found", "no such reply of yours")
            conn.execute(delete(canned_t).where(canned_t.c.id == reply_id))

    await run_in_threadpool(remove, state.engine)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
