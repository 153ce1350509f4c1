"""corral: a WSGI server offering every common concurrency model."""

from corral.compat.run_simple import run_simple

__all__ = ["__version__", "run_simple"]
__version__ = "0.1.0"
