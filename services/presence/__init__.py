"""Presence: which users are online, told to their conversation peers."""
