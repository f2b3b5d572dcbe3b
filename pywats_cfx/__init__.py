"""IPC-CFX adapter for pywats-events."""
