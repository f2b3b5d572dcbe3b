"""WATS handlers for pywats-events."""
