"""The pytest plugin of pywats-events (entry point ``pytest11``): fixtures for testing handler plugins.

Installing pywats-events is all it takes; the fixtures are in `pywats_events_pytest.plugin`. This package
sits above the core, the CFX adapter and the WATS handlers (it hands out fixtures of all three) and imports
none of them until a test asks for a fixture, so a test run that uses none pays nothing.
"""
