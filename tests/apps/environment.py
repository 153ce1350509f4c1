"""Shows environment variables of the serving process: GET /NAME answers the value NAME
had when this module was imported, then its value now ("-" for unset)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

AT_IMPORT = dict(os.environ)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    name = environ["PATH_INFO"].lstrip("/")
    body = f"{AT_IMPORT.get(name, '-')} {os.environ.get(name, '-')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
