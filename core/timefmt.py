"""Times on the wire are RFC 3339 UTC strings with milliseconds.

Datetimes in the program are always aware and in UTC (the table models refuse
naive ones), so every conversion to the wire goes through here.
"""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_wire(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
