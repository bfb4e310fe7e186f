"""The shared logging set-up: ids on records, and psycopg's pipeline echo dropped."""

from __future__ import annotations

import logging

import pytest

from core.logs import log_context, setup_logging


def test_ids_ride_on_records_and_the_pipeline_echo_is_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO", "unit-1")
    try:
        with log_context(call_id="k_1"):
            logging.getLogger("services.example").warning("handled")
        psycopg = logging.getLogger("psycopg")
        psycopg.warning("error ignored terminating %r: %s", "<pipeline>", "pipeline aborted")
        psycopg.warning("connection lost")
        lines = capsys.readouterr().err.splitlines()
    finally:
        logging.basicConfig(force=True)
    assert any("unit-1 services.example: handled call_id=k_1" in line for line in lines)
    assert any("psycopg: connection lost" in line for line in lines)
    assert not any("error ignored terminating" in line for line in lines)
