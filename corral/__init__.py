"""corral: a WSGI server offering every common concurrency model."""

from __future__ import annotations

from typing import Any

from corral import compiled
from corral.version import __version__

# Before any module of the per-request path is imported: compiled or pure Python.
compiled.choose()

__all__ = ["__version__", "run_simple"]


def __getattr__(name: str) -> Any:
    # Imported on first use so that `python -m corral.config` and the CLI load only
    # what they need.
    if name == "run_simple":
        from corral.compat.run_simple import run_simple

        return run_simple
    raise AttributeError(f"module 'corral' has no attribute {name!r}")
