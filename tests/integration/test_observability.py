"""What operators watch: Prometheus metrics on the API, each service's figures on
`svc/<name>/<instance>/metrics` for broker tools, and JSON logs carrying ids."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from bridge import topics
from bridge.topics import UpKind
from tests.conftest import single_stack
from tests.factories import register
from tests.integration.call_helpers import service_watcher
from tests.integration.mqtt_helpers import inbox, text_send, wait_for
from tools.stack import Stack

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def watched(database_factory: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = single_stack(
        database_factory(),  # type: ignore[operator]
        tmp_path_factory.mktemp("observed"),
        METRICS_PUBLISH_SECONDS="0.3",
        LOG_FORMAT="json",
    )
    yield stack
    stack.stop()


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus' text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        key, _, value = line.rpartition(" ")
        if key.split("{")[0] == name and all(f'{k}="{v}"' in key for k, v in labels.items()):
            return float(value)
    return 0.0


def test_the_api_counts_requests_by_route_and_sends_by_outcome(watched: Stack) -> None:
    api = watched.config.api_url
    seller, buyer = register(api, "seller"), register(api, "buyer")
    conv = seller.conversation(buyer)
    sent = seller.request(
        "POST",
        f"/v1/conversations/{conv}/messages",
        json={"client_msg_id": "m1", "kind": "text", "text": "hello"},
    )
    assert sent.status_code == 201, sent.text
    refused = seller.request(
        "POST", f"/v1/conversations/{conv}/messages", json={"client_msg_id": "m2", "kind": "text"}
    )
    assert refused.status_code == 422
    text = httpx.get(f"{api}/metrics").text
    # Per route template: the conversation's id never becomes a label.
    route = "/v1/conversations/{conv_id}/messages"
    assert sample(text, "http_requests_total", handler=route, status="201", method="POST") >= 1
    assert conv not in text
    assert sample(text, "chat_sends_total", outcome="stored") >= 1


async def test_services_publish_their_figures_for_broker_tools(watched: Stack) -> None:
    api = watched.config.api_url
    seller, buyer = register(api, "seller"), register(api, "buyer")
    conv = seller.conversation(buyer)
    async with inbox(seller) as s, service_watcher(watched, "metrics-watch") as watch:
        await s.publish(topics.conv_up(conv, UpKind.MSG, seller.user_id), text_send("k1"))
        assert (await wait_for(s, "/ack", client_msg_id="k1"))["status"] == "stored"
        topic = topics.service_metrics("persistence", "1")
        assert await watch.subscribe([(topic, 0)]) == [0]
        handled = f"chat_mqtt_handled_total{{route={topics.conv_up_filter(UpKind.MSG)}}}"
        figures: dict[str, float] = {}
        # Retained: the latest arrives at once; later ones follow the period.
        # The ack goes out before the handler returns, so a snapshot taken in
        # between counts the send but not yet the handled message: wait for both.
        for _ in range(20):
            figures = json.loads((await watch.next_message(5)).payload)
            if figures.get("chat_sends_total{outcome=stored}", 0) >= 1 and handled in figures:
                break
        assert figures["chat_sends_total{outcome=stored}"] >= 1
        assert figures["chat_mqtt_connected"] == 1
        assert figures[handled] >= 1
        assert figures["chat_store_batch_seconds_count"] >= 1


async def test_json_logs_carry_the_ids_of_what_was_handled(watched: Stack) -> None:
    api = watched.config.api_url
    seller, buyer = register(api, "seller"), register(api, "buyer")
    conv = seller.conversation(buyer)
    async with inbox(seller) as s:
        await s.publish(topics.conv_up(conv, UpKind.MSG, seller.user_id), text_send("k2", ""))
        ack = await wait_for(s, "/ack", client_msg_id="k2")
        assert ack["status"] == "rejected"
    lines = (watched.log_dir / "persistence-1.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records, "no JSON log records"
    rejected = [r for r in records if r.get("client_msg_id") == "k2"]
    assert rejected, records[-5:]
    assert rejected[0]["conv_id"] == conv and rejected[0]["user_id"] == seller.user_id
    assert rejected[0]["process"] == "persistence-1" and rejected[0]["level"] == "INFO"
