"""The kinds of app Werkzeug's dev-server tests serve, and the self-call app
(`tests.apps.self_call`), under `corral.run_simple`.

`python -m tests.apps.werkzeug_live APP HOSTNAME [NAME=LITERAL ...]` serves APP (one of
`APPS`) with `run_simple(HOSTNAME, 0, app, NAME=LITERAL, ...)`: the port is the kernel's
choice, read back from the "Listening at" line.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.apps.self_call import app as self_call_app


@Request.application  # type: ignore[arg-type]
def environ_app(request: Request) -> Response:
    """The environ as JSON (values that are not JSON as their str); /crash raises."""
    if request.path == "/crash":
        raise RuntimeError("crash requested")
    return Response(json.dumps(request.environ, default=str), content_type="application/json")


@Request.application  # type: ignore[arg-type]
def streaming_app(request: Request) -> Response:
    """Five lines from a generator, so no Content-Length; /crash raises after them."""

    def lines() -> Iterator[str]:
        for number in range(5):
            yield f"{number}\n"
        if request.path == "/crash":
            raise RuntimeError("crash requested")

    return Response(lines())


@Request.application  # type: ignore[arg-type]
def form_app(request: Request) -> Response:
    """The environ, the parsed form and the uploaded files' text, as JSON."""
    body = {
        "environ": request.environ,
        "form": request.form.to_dict(),
        "files": {name: upload.read().decode() for name, upload in request.files.items()},
    }
    return Response(json.dumps(body, default=str), content_type="application/json")


APPS: dict[str, Callable[..., Any]] = {
    "environ": environ_app,
    "streaming": streaming_app,
    "form": form_app,
    "self_call": self_call_app,
}


def main() -> None:
    name, hostname = sys.argv[1], sys.argv[2]
    options = {
        key: ast.literal_eval(value) for key, value in (pair.split("=", 1) for pair in sys.argv[3:])
    }
    from corral import run_simple

    run_simple(hostname, 0, APPS[name], **options)


if __name__ == "__main__":
    main()
