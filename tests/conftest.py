"""Shared test set-up: no downloads (the machines have no internet), small thread counts."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DLLAB_ALLOW_DOWNLOAD", "0")
os.environ.setdefault("DLLAB_DATA_DIR", str(ROOT / "data"))
