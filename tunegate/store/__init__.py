"""Durable state. ``Store`` is the contract; ``SqlStore`` implements it on SQLite or PostgreSQL."""

from tunegate.store.base import Page, Store
from tunegate.store.sql import SqlStore, open_store

__all__ = ["Page", "SqlStore", "Store", "open_store"]
