"""The broker's TLS listeners (docs/deploy.md, "TLS"), on the project's config
with a certificate authority and certificates made for the test by `openssl`:
devices talk through the whole system over MQTT/TLS and secure WebSocket; with a
CA configured the MQTT/TLS port wants a client certificate that CA signed; plain
MQTT on a TLS port and TLS older than 1.2 get nowhere."""

from __future__ import annotations

import getpass
import json
import os
import queue
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bridge import topics
from bridge.topics import UpKind
from core.config import Settings
from tests.factories import register
from tests.integration.mqtt_helpers import text_send
from tools.broker import BrokerConfig, BrokerTls, find_plugin, free_port, start_broker
from tools.stack import API, PERSISTENCE, PROJECT_DIR, Stack, StackConfig

HOST = "127.0.0.1"
Transport = Literal["tcp", "websockets"]


# --- certificates -------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: KeyPair
    server: KeyPair  # for 127.0.0.1 and localhost
    client: KeyPair  # signed by `ca`
    stranger: KeyPair  # a client certificate signed by another CA


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def _new_ca(folder: Path, name: str) -> KeyPair:
    pair = KeyPair(folder / f"{name}.pem", folder / f"{name}.key")
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", pair.key, "-out", pair.cert, "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return pair


def _new_leaf(folder: Path, name: str, ca: KeyPair, extensions: str) -> KeyPair:
    pair = KeyPair(folder / f"{name}.pem", folder / f"{name}.key")
    request, extfile = folder / f"{name}.csr", folder / f"{name}.ext"
    extfile.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"authorityKeyIdentifier=keyid\n{extensions}\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", pair.key, "-out", request, "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
        "-out", pair.cert, "-days", "2", "-extfile", extfile,
    )  # fmt: skip
    return pair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make the test's certificates")
    folder = tmp_path_factory.mktemp("pki")
    ca, other_ca = _new_ca(folder, "test-ca"), _new_ca(folder, "other-ca")
    return Pki(
        ca=ca,
        server=_new_leaf(
            folder,
            "broker",
            ca,
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost",
        ),
        client=_new_leaf(folder, "device", ca, "extendedKeyUsage=clientAuth"),
        stranger=_new_leaf(folder, "stranger", other_ca, "extendedKeyUsage=clientAuth"),
    )


# --- raw MQTT connections -------------------------------------------------------------


class Connection:
    """One paho connection over TCP or WebSocket, TLS or not, with what it receives."""

    def __init__(
        self,
        port: int,
        transport: Transport,
        *,
        username: str,
        password: str,
        client_id: str,
        ca: Path | None = None,
        client_cert: KeyPair | None = None,
    ) -> None:
        self.port = port
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            transport=transport,
            reconnect_on_failure=False,
        )
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        if ca is not None:
            self.client.tls_set(
                ca_certs=str(ca),
                certfile=str(client_cert.cert) if client_cert else None,
                keyfile=str(client_cert.key) if client_cert else None,
            )
        self.client.username_pw_set(username, password)
        self.outcome: queue.Queue[str] = queue.Queue()
        self.inbox: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda _c, _u, message: self.inbox.put(message)
        self.client.on_subscribe = lambda *_: self.subscribed.set()

    def _on_connect(
        self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None
    ) -> None:
        self.outcome.put("connected" if not reason.is_failure else f"refused: {reason}")

    def _on_disconnect(
        self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None
    ) -> None:
        self.outcome.put(f"closed: {reason}")

    def open(self, timeout: float = 5) -> str:
        """How the attempt ended: "connected", "refused: ...", "closed: ...",
        or the error the TLS or TCP handshake raised."""
        try:
            self.client.connect(HOST, self.port)
        except (OSError, ssl.SSLError) as exc:
            return f"error: {exc!r}"
        self.client.loop_start()
        try:
            return self.outcome.get(timeout=timeout)
        except queue.Empty:
            return "no answer"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, 1)
        assert self.subscribed.wait(5), f"no SUBACK for {topic}"

    def wait_for(self, topic_suffix: str, **fields: Any) -> dict[str, Any]:
        """The next message whose topic ends with `topic_suffix` and whose JSON has `fields`."""
        while True:
            message = self.inbox.get(timeout=10)
            if not message.topic.endswith(topic_suffix):
                continue
            body: dict[str, Any] = json.loads(message.payload)
            if all(body.get(k) == v for k, v in fields.items()):
                return body


@pytest.fixture
def connections() -> Iterator[list[Connection]]:
    """Connections a test opens; closed after it."""
    opened: list[Connection] = []
    yield opened
    for connection in opened:
        connection.close()


def device(
    opened: list[Connection], creds: dict[str, Any], port: int, transport: Transport, **tls: Any
) -> Connection:
    mqtt = creds["mqtt"]
    connection = Connection(
        port,
        transport,
        username=mqtt["username"],
        password=mqtt["password"],
        client_id=mqtt["client_id"],
        **tls,
    )
    opened.append(connection)
    return connection


def service_account(
    opened: list[Connection], stack: Stack, port: int, transport: Transport, **tls: Any
) -> Connection:
    c = stack.config
    connection = Connection(
        port,
        transport,
        username=c.accounts.service_username,
        password=c.service_password,
        client_id=f"tls-test-{secrets.token_hex(4)}",
        **tls,
    )
    opened.append(connection)
    return connection


# --- the system, with TLS and client certificates on ------------------------------------


@pytest.fixture(scope="module")
def tls_stack(
    database_factory: object, tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[Stack]:
    """The broker with TLS, the API (devices) and persistence (messages): what
    the messages here travel through."""
    tls = BrokerTls(pki.server.cert, pki.server.key, free_port(), free_port(), cafile=pki.ca.cert)
    stack = Stack(
        StackConfig(
            data_dir=tmp_path_factory.mktemp("tls"),
            database_url=database_factory(),  # type: ignore[operator]
            broker_tls=tls,
        )
    )
    try:
        stack.start([API, PERSISTENCE])
    except BaseException:
        stack.stop()
        raise
    yield stack
    stack.stop()


def tls_ports(stack: Stack) -> BrokerTls:
    tls = stack.broker_config.tls
    assert tls is not None
    return tls


def test_devices_talk_over_mqtt_tls_and_secure_websocket(
    tls_stack: Stack, pki: Pki, connections: list[Connection]
) -> None:
    api, tls = tls_stack.config.api_url, tls_ports(tls_stack)
    alice, bob = register(api, "alice"), register(api, "bob")
    conv = alice.conversation(bob)
    over_tls = device(
        connections, alice.device(), tls.tcp_port, "tcp", ca=pki.ca.cert, client_cert=pki.client
    )
    over_wss = device(connections, bob.device(), tls.ws_port, "websockets", ca=pki.ca.cert)
    assert over_tls.open() == "connected"
    assert over_wss.open() == "connected"
    over_tls.subscribe(topics.user_root(alice.user_id))
    over_wss.subscribe(topics.user_root(bob.user_id))

    over_tls.client.publish(
        topics.conv_up(conv, UpKind.MSG, alice.user_id), text_send("t1", "sent over TLS"), 1
    )
    assert over_tls.wait_for("/ack", client_msg_id="t1")["status"] == "stored"
    assert over_wss.wait_for(f"/conv/{conv}/msg", client_msg_id="t1")["text"] == "sent over TLS"

    over_wss.client.publish(
        topics.conv_up(conv, UpKind.MSG, bob.user_id), text_send("w1", "answered over WSS"), 1
    )
    assert over_wss.wait_for("/ack", client_msg_id="w1")["status"] == "stored"
    reply = over_tls.wait_for(f"/conv/{conv}/msg", client_msg_id="w1")
    assert (reply["text"], reply["seq"]) == ("answered over WSS", 2)


def test_the_mqtt_tls_port_wants_a_certificate_from_the_configured_ca(
    tls_stack: Stack, pki: Pki, connections: list[Connection]
) -> None:
    port = tls_ports(tls_stack).tcp_port
    without = service_account(connections, tls_stack, port, "tcp", ca=pki.ca.cert)
    stranger = service_account(
        connections, tls_stack, port, "tcp", ca=pki.ca.cert, client_cert=pki.stranger
    )
    known = service_account(
        connections, tls_stack, port, "tcp", ca=pki.ca.cert, client_cert=pki.client
    )
    assert without.open() != "connected"
    assert stranger.open() != "connected"
    assert known.open() == "connected"


def test_plain_mqtt_on_a_tls_port_gets_nowhere(
    tls_stack: Stack, pki: Pki, connections: list[Connection]
) -> None:
    tls = tls_ports(tls_stack)
    for port, transport in ((tls.tcp_port, "tcp"), (tls.ws_port, "websockets")):
        plain = service_account(connections, tls_stack, port, transport)  # type: ignore[arg-type]
        outcome = plain.open(timeout=3)
        assert outcome != "connected"
        # The port listens (the refusal is the broker's, not a closed port).
        assert "ConnectionRefused" not in outcome
    # The plain listeners still serve plain MQTT.
    plain_tcp = service_account(connections, tls_stack, tls_stack.config.tcp_port, "tcp")
    assert plain_tcp.open() == "connected"


def _handshake(port: int, pki: Pki, newest: ssl.TLSVersion) -> str:
    """The TLS version agreed with a client offering nothing newer than `newest`
    (and, below TLS 1.2, ciphers today's defaults refuse), or the error."""
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(pki.client.cert, pki.client.key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is, on purpose
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = newest
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        with (
            socket.create_connection((HOST, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=HOST) as secured,
        ):
            return str(secured.version())
    except ssl.SSLError as exc:
        return f"error: {exc.reason}"


def test_tls_older_than_1_2_is_refused(tls_stack: Stack, pki: Pki) -> None:
    tls = tls_ports(tls_stack)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tls_1_1 = ssl.TLSVersion.TLSv1_1
    for port in (tls.tcp_port, tls.ws_port):
        assert _handshake(port, pki, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        refused = _handshake(port, pki, tls_1_1)
        # An alert from the broker: the client did offer TLS 1.1.
        assert refused.startswith("error: ") and "ALERT" in refused


# --- the broker alone, set up by its command, TLS without a CA ------------------------------


def test_the_set_up_command_renders_tls_from_the_settings_without_a_ca(
    tmp_path: Path, pki: Pki, connections: list[Connection]
) -> None:
    """`python -m tools.broker prepare`, the containers' set-up step, fed the
    settings as docker-compose.yml feeds them: a broker that serves both TLS
    ports to a client with no certificate, and knows the accounts."""
    tls = BrokerTls(pki.server.cert, pki.server.key, free_port(), free_port())
    config = BrokerConfig(
        tmp_path / "data",
        free_port(),
        free_port(),
        tls=tls,
        config_file=tmp_path / "config" / "mosquitto.conf",
    )
    settings = {
        "ENVIRONMENT": "production",
        "MQTT_TCP_PORT": str(config.tcp_port),
        "MQTT_WS_PORT": str(config.ws_port),
        "MQTT_ADMIN_PASSWORD": "admin-secret",
        "MQTT_SERVICE_PASSWORD": "service-secret",
        "LIVEKIT_API_SECRET": "livekit-secret",
        "MQTT_MAX_CONNECTIONS": "50",
        "MQTT_TLS_CERTFILE": str(tls.certfile),
        "MQTT_TLS_KEYFILE": str(tls.keyfile),
        "MQTT_TLS_CAFILE": "",
        "MQTT_TLS_TCP_PORT": str(tls.tcp_port),
        "MQTT_TLS_WS_PORT": str(tls.ws_port),
    }
    command = [sys.executable, "-m", "tools.broker", "prepare"]
    command += ["--data-dir", str(config.data_dir), "--config", str(config.config_path)]
    command += ["--plugin", find_plugin(), "--user", getpass.getuser()]
    subprocess.run(
        command,
        # Away from the checkout, so no `.env` there is read.
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(PROJECT_DIR), **settings},
        check=True,
        capture_output=True,
        timeout=60,
    )
    rendered = _active_lines(config.config_path.read_text())
    assert "require_certificate true" not in rendered
    assert rendered.count("max_connections 50") == 4
    broker = start_broker(config, tmp_path / "broker.log")
    try:
        for port, transport in ((tls.tcp_port, "tcp"), (tls.ws_port, "websockets")):
            for username, password in (("svc", "service-secret"), ("provisioner", "admin-secret")):
                connection = Connection(
                    port,
                    transport,  # type: ignore[arg-type]
                    username=username,
                    password=password,
                    client_id=f"{username}-{transport}",
                    ca=pki.ca.cert,
                )
                connections.append(connection)
                assert connection.open() == "connected", (username, transport)
    finally:
        broker.terminate()
        broker.wait(10)


def _active_lines(config_text: str) -> list[str]:
    return [line for line in config_text.splitlines() if line and not line.startswith("#")]


def test_without_certificates_no_tls_listener_is_rendered(tmp_path: Path) -> None:
    plain = BrokerConfig(tmp_path, free_port(), free_port(), max_connections=123)
    active = _active_lines(plain.render())
    assert [line for line in active if line.startswith("listener")] == [
        f"listener {plain.tcp_port} 127.0.0.1",
        f"listener {plain.ws_port} 127.0.0.1",
    ]
    assert not [line for line in active if line.split()[0] in {"certfile", "keyfile", "cafile"}]
    assert active.count("max_connections 123") == 2


def test_tls_settings_must_name_both_certificate_and_key() -> None:
    assert BrokerTls.from_settings(Settings(_env_file=None)) is None
    with pytest.raises(ValueError, match="MQTT_TLS_KEYFILE"):
        BrokerTls.from_settings(Settings(_env_file=None, mqtt_tls_certfile="/c.pem"))
    with pytest.raises(ValueError, match="MQTT_TLS_CERTFILE"):
        BrokerTls.from_settings(Settings(_env_file=None, mqtt_tls_cafile="/ca.pem"))
    tls = BrokerTls.from_settings(
        Settings(
            _env_file=None,
            mqtt_tls_certfile="/certs/fullchain.pem",
            mqtt_tls_keyfile="/certs/privkey.pem",
            mqtt_tls_tcp_port=18883,
        )
    )
    assert tls == BrokerTls(
        Path("/certs/fullchain.pem"), Path("/certs/privkey.pem"), 18883, 8443, None
    )
