"""Who may post to a hook: a bearer token, or an HMAC-SHA256 signature of the body with a timestamp.

The signature scheme is the one GitHub and Stripe use: the sender computes
``hex(HMAC-SHA256(secret, "<timestamp>." + body))`` over the body exactly as sent (compressed if it is) and
sends ``X-Pywats-Timestamp: <unix seconds>`` and ``X-Pywats-Signature: sha256=<hex>``. A timestamp outside
the replay window is refused, so a captured request cannot be replayed later. Every comparison is
constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Mapping

from pydantic import SecretStr

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "AuthError", "HookAuth", "sign"]

TIMESTAMP_HEADER = "x-pywats-timestamp"
SIGNATURE_HEADER = "x-pywats-signature"


class AuthError(Exception):
    """Refused: the message is the reason given to the caller (it never holds the secret)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Pywats-Signature`` value for `body` sent at `timestamp` (what a sender computes)."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class HookAuth:
    """Checks one hook's requests. `scheme` ``none`` accepts everything (loopback test hooks only)."""

    def __init__(
        self,
        scheme: str,
        secret: SecretStr | None,
        replay_window: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if scheme != "none" and secret is None:
            raise ValueError(f"auth {scheme!r} needs a secret")
        self.scheme = scheme
        self._secret = secret
        self._bearer = ("Bearer " + secret.get_secret_value()).encode("utf-8") if secret else b""
        self.replay_window = replay_window
        self._clock = clock

    @property
    def needs_body(self) -> bool:
        return self.scheme == "hmac"

    def check(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raises `AuthError` with the reason when the request may not pass."""
        if self.scheme == "none":
            return
        if self.scheme == "bearer":
            given = headers.get("authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, self._bearer):
                raise AuthError("missing or wrong bearer token" if given else "missing bearer token")
            return
        stamp = headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not stamp or not signature:
            raise AuthError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
        try:
            sent_at = float(stamp)
        except ValueError:
            raise AuthError(f"{TIMESTAMP_HEADER} is not unix seconds") from None
        if not math.isfinite(sent_at) or abs(self._clock() - sent_at) > self.replay_window:
            raise AuthError(
                f"stale timestamp: {TIMESTAMP_HEADER} is more than {self.replay_window:g} s from the server's"
                " clock"
            )
        assert self._secret is not None
        expected = sign(self._secret.get_secret_value(), stamp, body)
        if not hmac.compare_digest(signature.strip().encode("utf-8", "replace"), expected.encode("ascii")):
            raise AuthError("bad signature")
