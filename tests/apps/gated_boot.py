"""An app whose import waits (30 s at most) until the file named by $GATED_BOOT_GATE
exists, so that a test can signal a worker while it boots. Each waiting process first
creates `GATE.waiting.PID`."""

from __future__ import annotations

import os
import time
from pathlib import Path

_gate = Path(os.environ["GATED_BOOT_GATE"])
if not _gate.exists():
    Path(f"{_gate}.waiting.{os.getpid()}").touch()
    _deadline = time.monotonic() + 30
    while not _gate.exists() and time.monotonic() < _deadline:
        time.sleep(0.02)

from tests.apps.workers_app import app  # noqa: E402

__all__ = ["app"]
