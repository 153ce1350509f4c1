"""Serve tests/apps/behaviours.py through corral's run_simple with TLS:
`python -m tests.apps.run_simple_tls FORM [CERTFILE KEYFILE] [NAME=LITERAL ...]`.

FORM is how `ssl_context` is given: "context" (an ssl.SSLContext loaded from the files),
"pair" (the two paths), "adhoc", or "adhoc-without-cryptography" (as where the package
is not installed). NAME=LITERAL pairs are further keywords (threaded=True by default).
"""

from __future__ import annotations

import ast
import ssl
import sys
from typing import Any

from tests.apps.behaviours import app


def main() -> None:
    form, arguments = sys.argv[1], sys.argv[2:]
    ssl_context: Any
    if form in ("context", "pair"):
        certfile, keyfile, *arguments = arguments
        if form == "context":
            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_context.load_cert_chain(certfile, keyfile)
        else:
            ssl_context = (certfile, keyfile)
    else:
        if form == "adhoc-without-cryptography":
            # An import of a module set to None raises ImportError, as a missing one does.
            sys.modules["cryptography"] = None  # type: ignore[assignment]
        ssl_context = "adhoc"
    options = {
        name: ast.literal_eval(value) for name, value in (pair.split("=", 1) for pair in arguments)
    } or {"threaded": True}

    from corral import run_simple

    run_simple("127.0.0.1", 0, app, ssl_context=ssl_context, **options)


if __name__ == "__main__":
    main()
