"""pywats_cfx decodes without pulling in the AMQP client or any WATS code."""

from __future__ import annotations

import subprocess
import sys

import pywats_cfx


def test_import_does_not_load_transport_or_wats_code() -> None:
    code = (
        "import sys, pywats_cfx, pywats_cfx.codec, pywats_cfx.mapping, pywats_cfx.models\n"
        "import pywats_cfx.explorer\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('handlers', 'aio_pika', 'aiormq'))\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_public_names_are_exported() -> None:
    assert sorted(pywats_cfx.__all__) == sorted(n for n in pywats_cfx.__all__ if hasattr(pywats_cfx, n))
    assert {"CFXCodec", "DecodeLimits", "map_envelope", "MAPPED_MESSAGES"} <= set(pywats_cfx.__all__)
