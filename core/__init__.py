"""Shared foundations: settings, database, table models, ids and time formats."""
