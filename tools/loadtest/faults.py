"""The faults the suite injects, each a way to break one part and a way to
bring it back, through the stack's own process control and the private
PostgreSQL server.

A fault ends when the suite starts the part again; `repair` returns once the
part says it is up (a service's retained status online, the API's health
check, the broker's listeners, PostgreSQL accepting connections).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tools.loadtest.postgres import PrivatePostgres
from tools.stack import GATEWAY, Stack


@dataclass(frozen=True)
class Fault:
    name: str
    what: str  # one line for the report
    inject: Callable[[], None]
    repair: Callable[[], None]
    down_seconds: float
    # Every device connection drops with it (the broker), so the suite also
    # waits for all of them to be back.
    drops_connections: bool = False


def _service(stack: Stack, name: str, module: str, down: float) -> Fault:
    process = f"{name}-1"
    return Fault(
        f"kill-{name}",
        f"kill -9 {process}, start it again after {down:g} s",
        lambda: stack.kill(process),
        lambda: stack.start_service(name, module, "1"),
        down,
    )


def all_faults(
    stack: Stack, postgres: PrivatePostgres, down_seconds: float, outage_seconds: float
) -> dict[str, Fault]:
    """Every fault, by name, in the order the suite runs them."""
    down = down_seconds
    faults = [
        _service(stack, "persistence", "services.persistence", down),
        _service(stack, "callsig", "services.callsig", down),
        _service(stack, "support_router", "services.support_router", down),
        _service(stack, "presence", "services.presence", down),
        _service(stack, "push", "services.push", down),
        Fault(
            "kill-api",
            f"kill -9 the API, start it again after {down:g} s",
            lambda: stack.kill("api"),
            stack.start_api,
            down,
        ),
        Fault(
            "kill-ws_gateway",
            f"kill -9 the devices' WebSocket gateway, start it again after {down:g} s",
            lambda: stack.kill(GATEWAY),
            stack.start_gateway,
            down,
            drops_connections=True,
        ),
        Fault(
            "restart-broker",
            f"stop the broker (SIGTERM: it saves its state), start it after {down:g} s",
            lambda: stack.terminate("broker"),
            stack.start_broker,
            down,
            drops_connections=True,
        ),
        Fault(
            "kill-broker",
            f"kill -9 the broker (unsaved state is lost), start it after {down:g} s",
            lambda: stack.kill("broker"),
            stack.start_broker,
            down,
            drops_connections=True,
        ),
        Fault(
            "stop-postgresql",
            f"stop PostgreSQL (fast shutdown) for {outage_seconds:g} s, start it again",
            postgres.stop,
            postgres.start,
            outage_seconds,
        ),
    ]
    return {fault.name: fault for fault in faults}


FAULT_NAMES = (
    "kill-persistence",
    "kill-callsig",
    "kill-support_router",
    "kill-presence",
    "kill-push",
    "kill-api",
    "kill-ws_gateway",
    "restart-broker",
    "kill-broker",
    "stop-postgresql",
)
