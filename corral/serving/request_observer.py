"""What a worker notes about each request: when it began (for the master's --timeout and
the traceback dump), how many have been served (--max-requests), and the pre_request and
post_request hooks, with gunicorn's arguments.

Only a worker under a master, or a server with request hooks, has an observer; a plain
single process pays nothing for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.config import Config
    from corral.http.parser import RequestHead
    from corral.wsgi.response import Response

error_log = logging.getLogger("corral.error")


class HookRequest:
    """The `req` given to pre_request and post_request: gunicorn's Request attributes."""

    def __init__(self, head: RequestHead) -> None:
        self.method = head.method
        self.uri = head.target
        self.path = head.path
        self.query = head.query
        major, _, minor = head.version[5:].partition(".")
        self.version = (int(major), int(minor or 0))
        # gunicorn's names: the wire names upper-cased; those holding "_" are dropped, as
        # gunicorn's default header_map ("drop") does.
        self.headers = [
            (name.upper(), value) for name, value in head.fields.items() if "_" not in name
        ]


class HookResponse:
    """The `resp` given to post_request: status, status_code, headers and bytes sent."""

    def __init__(self, response: Response) -> None:
        self.status_code = response.code
        self.status = response.status_text()
        self.headers = response.header_list()
        self.sent = response.bytes_sent


class RequestObserver:
    """Requests in flight by thread (or greenlet), requests served, and the hooks."""

    def __init__(
        self,
        worker: Any,
        pre_request: Any = None,
        post_request: Any = None,
        limit: int = 0,
        on_limit: Callable[[], None] | None = None,
    ) -> None:
        self.worker = worker
        self.pre_request = pre_request
        self.post_request = post_request
        # After `limit` requests (--max-requests), `on_limit` is called once.
        self.limit = limit
        self.on_limit = on_limit
        # thread ident -> (monotonic start, head); the request line is only written out
        # when the worker is aborted, so it is not formatted per request.
        self.in_flight: dict[int, tuple[float, RequestHead]] = {}
        self.served = 0

    @classmethod
    def for_hooks(cls, config: Config, worker: Any) -> RequestObserver | None:
        """An observer when there is a worker to supervise or a request hook to run."""
        if worker is None and config.pre_request is None and config.post_request is None:
            return None
        return cls(worker, config.pre_request, config.post_request)

    def started(self, head: RequestHead) -> HookRequest | None:
        self.in_flight[threading.get_ident()] = (time.monotonic(), head)
        if self.pre_request is None:
            return None
        request = HookRequest(head)
        try:
            self.pre_request(self.worker, request)
        except Exception:
            error_log.exception("pre_request hook failed")
        return request

    def finished(
        self, request: HookRequest | None, head: RequestHead, environ: Any, response: Response
    ) -> None:
        self.in_flight.pop(threading.get_ident(), None)
        self.served += 1
        if self.served == self.limit and self.on_limit is not None:
            self.on_limit()
        if self.post_request is None:
            return
        try:
            self.post_request(
                self.worker, request or HookRequest(head), environ, HookResponse(response)
            )
        except Exception:
            error_log.exception("post_request hook failed")

    def oldest_start(self) -> float:
        """When the longest-running request in flight began; 0.0 when none is."""
        try:
            return min((started for started, _ in self.in_flight.values()), default=0.0)
        except RuntimeError:
            # Another thread changed the dict mid-iteration; the next tick asks again.
            return 0.0

    def requests_in_flight(self) -> dict[int, tuple[float, str]]:
        """Thread ident -> (start, request line), for the traceback dump."""
        return {
            ident: (started, f"{head.method} {head.target} {head.version}")
            for ident, (started, head) in list(self.in_flight.items())
        }
