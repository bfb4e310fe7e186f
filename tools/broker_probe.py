"""Which MQTT broker can carry this system: a feature probe (docs/brokers.md).

Checks, one by one, what the design needs from a broker (MQTT 5, WebSocket,
QoS 1, persistent sessions, redelivery of unacknowledged messages, `$share`,
retained messages, Last Will, session takeover, `$SYS`, a packet limit, and the
access rules of devices) and prints a table feature -> pass / fail / n/a.

    python -m tools.broker_probe --broker mosquitto     # start it, probe it, stop it
    python -m tools.broker_probe --broker amqtt --markdown
    python -m tools.broker_probe --host 127.0.0.1 --port 1884 --ws-port 9001 \
        --username svc --password "$PASSWORD" \
        [--admin-username provisioner --admin-password "$ADMIN"]   # a running broker

Against a running broker, devices are provisioned through Mosquitto's dynamic
security when an admin account is given; otherwise the access checks say they
need a provisioning backend.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bridge.mqtt import MqttError
from tools.brokers import checks
from tools.brokers.access_checks import AccessChecks
from tools.brokers.context import PROJECT_MAX_PACKET_SIZE, ProbeContext, Result, Target
from tools.brokers.devices import DynsecDevices, NotSupported
from tools.brokers.launchers import LAUNCHERS
from tools.brokers.probe_client import MQTT5, MQTT311, ProbeError

# One check never holds the probe longer than this.
CHECK_TIMEOUT = 30.0

# Every feature, in the order checked, with the words the table shows.
FEATURES: dict[str, str] = {
    "mqtt5": "MQTT 5 connect",
    "login": "password login, wrong password refused",
    "websocket": "MQTT over WebSocket",
    "qos1": "QoS 1 round trip",
    "wildcards": "wildcard filters (+, #)",
    "offline_queue": "persistent session queues QoS 1 while offline",
    "redelivery": "unacknowledged QoS 1 delivered again",
    "shared": "shared subscription ($share)",
    "retained": "retained message replayed to late subscribers",
    "will": "Last Will on an abrupt disconnect",
    "takeover": "same client id takes over",
    "sys": "$SYS figures",
    "max_packet": "maximum packet size enforced",
    "provisioning": "devices provisioned at run time",
    "acl_publish": "ACL: a device publishes only as its user",
    "acl_read": "ACL: a device reads only its user's topics",
    "client_id_bound": "client id bound to the device's credentials",
    "revocation": "revoked device dropped at once",
}


@dataclass(frozen=True)
class Report:
    broker: str
    # MQTT protocol level the checks after the first one spoke (5 or 4), or 0
    # when the broker took neither.
    protocol: int
    results: list[Result]

    def status(self) -> dict[str, str]:
        return {result.feature: result.status for result in self.results}

    def failures(self) -> set[str]:
        return {result.feature for result in self.results if result.status == "fail"}


async def guarded(feature: str, check: Callable[[], Awaitable[Result]]) -> Result:
    """Run one check; what the broker or the provisioning did wrong becomes its reason."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await check()
    except NotSupported as exc:
        return Result(feature, "n/a", str(exc))
    except TimeoutError:
        return Result(feature, "fail", "timed out")
    except (ProbeError, MqttError, OSError) as exc:
        return Result(feature, "fail", f"{type(exc).__name__}: {exc}")


async def probe(target: Target, broker: str = "") -> Report:
    ctx = ProbeContext(target)
    first = await guarded("mqtt5", lambda: checks.mqtt5_connect(ctx))
    results = [first]
    if first.status != "pass":
        ctx.protocol = MQTT311 if await checks.mqtt311_connect(ctx) else 0
    access = AccessChecks(ctx)
    steps: dict[str, Callable[[], Awaitable[Result]]] = {
        "login": lambda: checks.login(ctx),
        "websocket": lambda: checks.websocket(ctx),
        "qos1": lambda: checks.qos1(ctx),
        "wildcards": lambda: checks.wildcards(ctx),
        "offline_queue": lambda: checks.offline_queue(ctx),
        "redelivery": lambda: checks.redelivery(ctx),
        "shared": lambda: checks.shared_subscription(ctx),
        "retained": lambda: checks.retained(ctx),
        "will": lambda: checks.last_will(ctx),
        "takeover": lambda: checks.takeover(ctx),
        "sys": lambda: checks.sys_topics(ctx),
        "max_packet": lambda: checks.max_packet_size(ctx),
        "provisioning": access.provisioning,
        "acl_publish": access.publish_as_oneself,
        "acl_read": access.read_own_only,
        "client_id_bound": access.client_id_bound,
        # Last: it removes a device.
        "revocation": access.revocation,
    }
    try:
        for feature, step in steps.items():
            if ctx.protocol == 0:
                results.append(Result(feature, "fail", "no connection over MQTT 5 or 3.1.1"))
            else:
                results.append(await guarded(feature, step))
    finally:
        if target.devices is not None:
            await target.devices.close()
    return Report(broker, ctx.protocol, results)


# --- output -------------------------------------------------------------------------


def protocol_note(report: Report) -> str:
    if report.protocol == MQTT5:
        return "all checks over MQTT 5"
    if report.protocol == MQTT311:
        return "MQTT 5 refused: the other checks ran over MQTT 3.1.1"
    return "no connection"


def text_table(report: Report) -> str:
    width = max(len(label) for label in FEATURES.values())
    lines = [f"{report.broker} ({protocol_note(report)})"]
    for result in report.results:
        label = FEATURES[result.feature]
        lines.append(f"  {label:<{width}}  {result.status:<4}  {result.reason}")
    return "\n".join(lines)


def markdown_table(report: Report) -> str:
    lines = [
        f"{report.broker}: {protocol_note(report)}.",
        "",
        "| feature | result | measured |",
        "|---|---|---|",
    ]
    for result in report.results:
        reason = result.reason.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {FEATURES[result.feature]} | {result.status} | {reason} |")
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------


def command_line() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.broker_probe",
        description="Check, feature by feature, whether an MQTT broker can carry this system.",
    )
    parser.add_argument(
        "--broker", choices=sorted(LAUNCHERS), help="start this broker, probe it, stop it"
    )
    parser.add_argument("--host", default="127.0.0.1", help="a running broker's address")
    parser.add_argument("--port", type=int, help="its MQTT/TCP port")
    parser.add_argument("--ws-port", type=int, help="its MQTT-over-WebSocket port")
    parser.add_argument("--ws-path", default="/mqtt", help="the WebSocket path (default /mqtt)")
    parser.add_argument("--username", help="an account that may publish and subscribe anywhere")
    parser.add_argument("--password", help="its password")
    parser.add_argument("--admin-username", help="Mosquitto dynamic-security admin account")
    parser.add_argument("--admin-password", help="its password")
    parser.add_argument(
        "--max-packet-size",
        type=int,
        default=PROJECT_MAX_PACKET_SIZE,
        help="the size the broker is configured to cut packets above",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return parser


def target_from(args: argparse.Namespace) -> Target:
    devices = None
    if args.admin_username:
        devices = DynsecDevices(
            args.host, args.port, username=args.admin_username, password=args.admin_password
        )
    return Target(
        args.host,
        args.port,
        args.username,
        args.password,
        ws_port=args.ws_port,
        ws_path=args.ws_path,
        max_packet_size=args.max_packet_size,
        devices=devices,
        no_devices_reason="no admin account given (--admin-username) to provision devices",
    )


def probe_launched(name: str) -> Report:
    """Start the named broker in a temporary folder, probe it, stop it."""
    with (
        tempfile.TemporaryDirectory(prefix=f"probe-{name}-") as tmp,
        LAUNCHERS[name](Path(tmp)) as broker,
    ):
        return asyncio.run(probe(broker.target, f"{broker.name} {broker.version}"))


def main(argv: list[str] | None = None) -> None:
    parser = command_line()
    args = parser.parse_args(argv)
    if args.broker:
        report = probe_launched(args.broker)
    elif args.port and args.username and args.password is not None:
        report = asyncio.run(probe(target_from(args), f"{args.host}:{args.port}"))
    else:
        parser.error("give --broker, or --port, --username and --password of a running broker")
    print(markdown_table(report) if args.markdown else text_table(report))


if __name__ == "__main__":
    main()
