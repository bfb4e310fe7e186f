"""Logging set-up shared by every process: one line per record, to stderr."""

import logging
import sys


def setup_logging(level: str, process: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s",
    )
    # paho logs every packet at DEBUG through its own logger only when asked.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
