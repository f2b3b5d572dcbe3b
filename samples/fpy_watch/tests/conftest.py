import sys
from pathlib import Path

# the plugin is importable from its source tree without being installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
