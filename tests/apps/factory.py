"""An application factory taking a literal argument, as `MODULE:factory('x')` names it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def create_app(greeting: str) -> Callable[..., Any]:
    body = greeting.encode()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    return app
