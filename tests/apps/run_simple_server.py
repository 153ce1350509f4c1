"""Serve tests/apps/flask_app.py through a run_simple: `python -m ... corral|werkzeug PORT`,
then NAME=LITERAL pairs passed to it as keywords (threaded=True when none are given)."""

from __future__ import annotations

import ast
import sys

from tests.apps.flask_app import app


def main() -> None:
    which, port = sys.argv[1], int(sys.argv[2])
    options = {
        name: ast.literal_eval(value)
        for name, value in (pair.split("=", 1) for pair in sys.argv[3:])
    } or {"threaded": True}
    if which == "corral":
        from corral import run_simple
    else:
        from werkzeug.serving import run_simple
    run_simple("127.0.0.1", port, app, **options)


if __name__ == "__main__":
    main()
