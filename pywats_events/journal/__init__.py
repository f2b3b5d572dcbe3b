"""Durable journal: accepted events survive crashes and long outages."""

from ._protocol import BufferedMarks, Journal, JournalEntry
from .sqlite import JournalStats, SqliteJournal

__all__ = ["BufferedMarks", "Journal", "JournalEntry", "JournalStats", "SqliteJournal"]
