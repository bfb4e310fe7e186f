"""Operational commands: the launcher, the broker helper, bench and demo."""
