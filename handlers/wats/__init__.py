"""WATS wire layer: request builders, senders, outbox, FakeWATS."""
