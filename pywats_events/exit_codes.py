"""Exit codes of `pywats-events` commands, so batch users and service managers can tell outcomes apart."""

from __future__ import annotations

import enum

__all__ = ["ExitCode"]


class ExitCode(enum.IntEnum):
    """What a `pywats-events run` (and the other commands) ended with.

    A run whose input ends (``--replay``, ``--max-messages``, ``--idle-exit``, the embedded demo) delivers
    everything it took in before it exits; its code says whether that worked. A run stopped by SIGINT or
    SIGTERM stops intake, finishes what is in flight within ``listener.drain_timeout`` and leaves the rest in
    the journal (the next start resumes it): that is the service contract, so it exits ``OK``."""

    #: everything taken in was delivered (or, after a signal, the stop was clean)
    OK = 0
    #: an error: could not start, a store failed, a command failed (its message says which)
    ERROR = 1
    #: a configuration mistake, named in the message
    CONFIG = 2
    #: the input was delivered, but some events went to the dead-letter queue during this run
    DEAD_LETTERS = 3
    #: unfinished events are left in the journal (WATS unreachable, a breaker open, or the drain timeout
    #: was too short); the next start resumes them
    NOT_DRAINED = 4
