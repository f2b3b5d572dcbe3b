"""``python -m pywats_cfx.explorer``."""

from .cli import main

raise SystemExit(main())
