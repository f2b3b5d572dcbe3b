"""Durable journal: accepted events survive crashes and long outages."""

from ._protocol import Journal, JournalEntry
from .sqlite import JournalStats, SqliteJournal

__all__ = ["Journal", "JournalEntry", "JournalStats", "SqliteJournal"]
