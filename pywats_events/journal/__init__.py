"""Durable journal: accepted events survive crashes and long outages."""

from ._protocol import Journal, JournalEntry

__all__ = ["Journal", "JournalEntry"]
