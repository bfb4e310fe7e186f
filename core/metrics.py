"""Every Prometheus metric of every process, defined in one place.

Each process registers only what it uses (a metric appears once a label is
used); all share these names, so one dashboard reads any instance. Latency
buckets are in seconds and start at 0.5 ms: the system's hops are milliseconds.

The MQTT runtime's own figures (messages in and out, unacknowledged publishes,
handler tasks) are plain counters on the client, read here on scrape by
`RuntimeCollector`, so the hot path pays nothing for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from bridge.service import ServiceRuntime

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

# --- every service (bridge/service.py) -------------------------------------------------
HANDLED = Counter("chat_mqtt_handled", "Inbound messages handled, by route", ["route"])
HANDLER_SECONDS = Histogram(
    "chat_mqtt_handler_seconds",
    "Time from a message's dispatch to its acknowledgement, by route",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
HANDLER_ERRORS = Counter(
    "chat_mqtt_handler_errors", "Handlers that raised (bugs, not bad input), by route", ["route"]
)

# --- messaging (services/persistence, api) ---------------------------------------------
SENDS = Counter("chat_sends", "Message sends by outcome (stored, duplicate, rejected)", ["outcome"])
SEND_REJECTIONS = Counter("chat_send_rejections", "Rejected sends, by code", ["code"])
STORE_BATCH_SECONDS = Histogram(
    "chat_store_batch_seconds", "One batch's transaction", buckets=LATENCY_BUCKETS
)
STORE_BATCH_SIZE = Histogram(
    "chat_store_batch_size", "Messages per batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
STORE_QUEUE = Gauge("chat_store_queue", "Sends waiting for the batch writer")

# --- calls (services/callsig) ------------------------------------------------------------
CALL_EVENTS = Counter("chat_call_events", "Call events sent to users, by event", ["event"])

# --- support (services/support_router, api) ---------------------------------------------
SUPPORT_EVENTS = Counter(
    "chat_support_events",
    "Events told to support users, by event (`assigned`: the assignments)",
    ["event"],
)
SUPPORT_QUEUE = Gauge("chat_support_queue_depth", "Tickets waiting for an operator")

# --- push (services/push) ----------------------------------------------------------------
PUSHES = Counter(
    "chat_pushes", "Push messages handed to Expo, by kind and result", ["kind", "result"]
)
PUSH_REQUEST_SECONDS = Histogram(
    "chat_push_request_seconds", "One request to Expo's push API", buckets=LATENCY_BUCKETS
)


class RuntimeCollector(Collector):
    """The MQTT runtime's counts, read when scraped."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        mqtt = self.runtime.mqtt
        yield CounterMetricFamily(
            "chat_mqtt_received", "MQTT messages received", value=mqtt.received_count
        )
        yield CounterMetricFamily(
            "chat_mqtt_published", "MQTT messages published", value=mqtt.published_count
        )
        yield GaugeMetricFamily(
            "chat_mqtt_unacknowledged",
            "Publishes the broker has not acknowledged yet",
            value=mqtt.unacknowledged,
        )
        yield GaugeMetricFamily(
            "chat_mqtt_inbound_queued", "Received messages not yet dispatched", mqtt.inbound_queued
        )
        yield GaugeMetricFamily(
            "chat_mqtt_connected", "1 while connected to the broker", int(mqtt.connected.is_set())
        )
        yield GaugeMetricFamily(
            "chat_runtime_tasks", "Handlers and background tasks running", self.runtime.task_count
        )


def watch_runtime(runtime: ServiceRuntime) -> Callable[[], None]:
    """Register the runtime's collector; returns its unregistering."""
    collector = RuntimeCollector(runtime)
    REGISTRY.register(collector)
    return lambda: REGISTRY.unregister(collector)


def summary() -> bytes:
    """The `chat_*` figures as one flat JSON object, for `svc/<name>/<instance>/metrics`
    (people watching with mosquitto_sub). Histograms give their count and sum."""
    figures: dict[str, float] = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("chat_"):
            continue
        for sample in family.samples:
            if sample.name.endswith(("_bucket", "_created")):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            figures[key] = round(sample.value, 6)
    return json.dumps(figures, sort_keys=True).encode()
