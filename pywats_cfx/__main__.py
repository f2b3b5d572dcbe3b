"""``python -m pywats_cfx`` runs the explorer."""

from .explorer import main

raise SystemExit(main())
