"""The app the corpus replay runs: it reads every body to its end before answering.

Reading the whole body first means a malformed body (bad chunk size, forbidden trailer)
is found while no response has started, so the server answers it with its error status
instead of a 200 followed by a closed connection. The answer is the request as the app saw
it, as JSON, so a test can check which fields reached the environ.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_SHOWN = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "CONTENT_LENGTH", "CONTENT_TYPE")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = environ["wsgi.input"].read()
    shown = {
        key: value for key, value in environ.items() if key in _SHOWN or key.startswith("HTTP_")
    }
    shown["body"] = body.decode("latin-1")
    answer = json.dumps(shown).encode()
    if environ["REQUEST_METHOD"] == "CONNECT":
        # A 2xx to CONNECT has no content (RFC 9110 section 9.3.6): the same JSON goes in
        # a field instead.
        start_response("200 OK", [("X-Request", answer.decode())])
        return []
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    )
    return [answer]
