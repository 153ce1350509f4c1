"""Request observers: what is told of each request as it starts and when it is done.

The serving state holds one list of them; the connection calls `started` before the
application runs and `finished` after its response, in list order. Each concern is one
observer: the access log (`corral.serving.access_log`), the pre_request and post_request
hooks. An empty list costs nothing per request, so a plain single process pays for none
of them. The process's slot in the shared table (--timeout, the traceback dump,
--max-requests, the stats) is told apart, as a `RequestSlot`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from corral.config import Config
    from corral.http.parser import RequestHead

error_log = logging.getLogger("corral.error")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What was answered: the status, the headers sent, body bytes sent, and to whom;
    with the bytes the request took on the wire (head and body as framed) and those of
    the response's head.

    `head` is None for a request corral refused before its request line could be read.
    """

    status_code: int
    status: str
    headers: list[tuple[str, str]]
    sent: int
    head: RequestHead | None
    peer: tuple[str, int] | str
    received: int = 0
    head_bytes: int = 0


class RequestObserver(Protocol):
    def started(self, head: RequestHead, environ: dict[str, Any]) -> Any:
        """Called before the application runs; the result comes back to `finished`.

        `environ` is the one the application gets; an observer that needs it after the
        response (post_request does) keeps it in what it returns.
        """

    def finished(self, token: Any, record: RequestRecord, seconds: float) -> None:
        """Called once the response is done or abandoned, whatever the application did."""


class RequestSlot(Protocol):
    """The process's slot in the shared table (`corral.process.slot_writer.SlotWriter`),
    told of each request directly rather than as an observer: the observers' path builds
    a `RequestRecord` and two lists per request, which measured more than the slot's own
    writes, and a server with --stats but no access log or hooks pays for none of it."""

    def enter(self, head: RequestHead, started: float) -> int:
        """The request enters the app at `started`; a token for `leave`, same thread."""
        ...

    def leave(self, token: int, status: int, received: int, sent: int, seconds: float) -> None:
        """It is answered: status, bytes on the wire each way, seconds in the app."""


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

    def __init__(self, record: RequestRecord) -> None:
        self.status_code = record.status_code
        self.status = record.status
        self.headers = record.headers
        self.sent = record.sent


class RequestHooks:
    """The pre_request and post_request server hooks, with gunicorn's arguments.

    A hook that raises is logged with its traceback; the request goes on.
    """

    def __init__(self, worker: Any, pre_request: Any = None, post_request: Any = None) -> None:
        self.worker = worker
        self.pre_request = pre_request
        self.post_request = post_request

    @classmethod
    def from_config(cls, config: Config, worker: Any) -> RequestHooks | None:
        """The hooks the config names; None when it names neither."""
        if config.pre_request is None and config.post_request is None:
            return None
        return cls(worker, config.pre_request, config.post_request)

    def started(
        self, head: RequestHead, environ: dict[str, Any]
    ) -> tuple[HookRequest, dict[str, Any]]:
        request = HookRequest(head)
        if self.pre_request is not None:
            try:
                self.pre_request(self.worker, request)
            except Exception:
                error_log.exception("pre_request hook failed")
        return request, environ

    def finished(
        self, token: tuple[HookRequest, dict[str, Any]], record: RequestRecord, seconds: float
    ) -> None:
        if self.post_request is None:
            return
        request, environ = token
        try:
            self.post_request(self.worker, request, environ, HookResponse(record))
        except Exception:
            error_log.exception("post_request hook failed")
