"""Logging set-up shared by every process: one record per line, to stderr.

`LOG_FORMAT=text` (the default, for people) or `json` (for log pipelines): one
JSON object per line with the time, level, process, logger and message, plus
the ids of what was being handled: `log_context(call_id=...)` around a piece
of work puts its ids on every record logged inside it (a contextvar, so each
asyncio task keeps its own).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

_ids: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("log_ids", default=())


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Ids (message, call, ticket, conversation, user...) for the records logged inside."""
    merged = dict(_ids.get()) | {k: v for k, v in ids.items() if v is not None}
    token = _ids.set(tuple(merged.items()))
    try:
        yield
    finally:
        _ids.reset(token)


def bind_log_ids(**ids: str | None) -> None:
    """Like `log_context`, for the rest of the current asyncio task (the service
    runtime handles each inbound message in a task of its own)."""
    merged = dict(_ids.get()) | {k: v for k, v in ids.items() if v is not None}
    _ids.set(tuple(merged.items()))


class _ContextIds(logging.Filter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_name = self.process
        ids = _ids.get()
        for key, value in ids:
            setattr(record, key, value)
        record.ids = "".join(f" {k}={v}" for k, v in ids)
        return True


class _PipelineEcho(logging.Filter):
    """Drops psycopg's "error ignored terminating <pipeline>" warning: it is
    logged while the error that aborted the batch (a repeated message, a lost
    server) is already on its way to the code that handles and logs it; alone
    in a log it reads like a failure of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error ignored terminating")


def setup_logging(level: str, process: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextIds(process))
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{levelname}{process_name}{name}{message}",
                style="{",
                timestamp="time",
                rename_fields={"levelname": "level", "process_name": "process"},
                # The text form's joined ids; in JSON each id is its own field.
                reserved_attrs=[*RESERVED_ATTRS, "ids"],
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(process_name)s %(name)s: %(message)s%(ids)s"
            )
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # paho logs every packet at DEBUG through its own logger only when asked.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    psycopg = logging.getLogger("psycopg")
    if not any(isinstance(existing, _PipelineEcho) for existing in psycopg.filters):
        psycopg.addFilter(_PipelineEcho())
