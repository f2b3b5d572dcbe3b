"""pywats_cfx never pulls in WATS code: the CFX side and the WATS side meet only in the core."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_load_wats_code() -> None:
    code = (
        "import sys, pywats_cfx, pywats_cfx.codec, pywats_cfx.mapping, pywats_cfx.models\n"
        "import pywats_cfx.explorer\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('handlers',))\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
