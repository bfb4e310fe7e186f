"""The broker probe (tools/broker_probe.py) against real brokers: the project's
Mosquitto must pass every check, and a second broker from the npm registry
(aedes, installed with `npm ci` when missing) must show exactly the table
docs/brokers.md documents for it, so neither the probe nor the document can
drift from what the brokers do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.broker_probe import FEATURES, markdown_table, probe
from tools.brokers import aedes, mosquitto
from tools.brokers.probe_client import MQTT5

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parents[2] / "docs" / "brokers.md"


def documented_statuses(broker: str) -> dict[str, str]:
    """Feature label -> status, from the table docs/brokers.md gives for `broker`
    (the table `--markdown` prints, headed by "<name> <version>: ...")."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{broker}: "))
    statuses: dict[str, str] = {}
    for line in lines[start + 1 :]:
        if statuses and not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in FEATURES.values():
            statuses[cells[0]] = cells[1]
    return statuses


def seen_statuses(results: list[tuple[str, str]]) -> dict[str, str]:
    return {FEATURES[feature]: status for feature, status in results}


async def test_the_projects_mosquitto_passes_every_check(tmp_path: Path) -> None:
    with mosquitto.running(tmp_path) as broker:
        report = await probe(broker.target, f"{broker.name} {broker.version}")
    assert report.protocol == MQTT5
    assert [r for r in report.results if r.status != "pass"] == [], markdown_table(report)
    assert [r.feature for r in report.results] == list(FEATURES)
    assert documented_statuses(report.broker) == seen_statuses(
        [(r.feature, r.status) for r in report.results]
    )


@pytest.mark.parametrize("name", sorted(aedes.RELEASES))
async def test_aedes_shows_the_documented_table(tmp_path: Path, name: str) -> None:
    with aedes.running_release(name, tmp_path) as broker:
        report = await probe(broker.target, f"{broker.name} {broker.version}")
    seen = seen_statuses([(r.feature, r.status) for r in report.results])
    assert seen == documented_statuses(report.broker), markdown_table(report)
    # What makes it unable to carry the design, whatever else it does.
    assert {"shared", "acl_publish", "revocation"} <= {
        r.feature for r in report.results if r.status != "pass"
    }
