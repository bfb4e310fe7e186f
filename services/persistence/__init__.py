"""Persistence: validate, check membership, store, assign seq, dedupe, ack, deliver.

Design: docs/architecture.md ("Persistence").
"""
