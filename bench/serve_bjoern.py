"""Runs an app from apps.py under bjoern, which has no command line of its own.

Usage: python serve_bjoern.py MODULE:APP HOST PORT
"""

from __future__ import annotations

import importlib
import sys

import bjoern


def main() -> None:
    target, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    module_name, app_name = target.split(":", 1)
    app = getattr(importlib.import_module(module_name), app_name)
    bjoern.run(app, host, port)


if __name__ == "__main__":
    main()
