"""The health path (--health-path): a GET or HEAD for it is answered by corral itself.

The dispatcher calls `answer_health` on its own loop, as soon as a whole request head for
the path is in hand and before the request would reach the concurrency model: the answer
never waits behind the application's requests, in any model, so a balancer's check
measures the server, not the length of its queue. 200 while the server serves; 503 once
it stops for good (TERM, for the whole --drain-delay and the drain after it), with
"Connection: close", so that a balancer polling the path stops sending requests here
before the listener closes. A worker retiring (HUP, --max-requests) still answers 200,
with "Connection: close": the server goes on serving in the other workers.

Only a GET or HEAD with no body, whose target is the path exactly (no query), is answered
here; anything else goes to the application as usual. The answer is not a request of the
application: no access log line, no server hooks, not counted by --stats; it is logged at
debug level.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from corral.http.framing import encode_head, frame_response
from corral.wsgi.response import current_date

if TYPE_CHECKING:
    from corral.http.parser import RequestHead
    from corral.serving.connection import Connection

error_log = logging.getLogger("corral.error")

_READY = (200, "200 OK", b"ok\n")
_STOPPING = (503, "503 Service Unavailable", b"stopping\n")
# A check must reach the server every time: no cache on the way may answer it.
_HEADERS = (("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store"))


def answer_health(connection: Connection, ready: bool) -> bool:
    """Answer the health request at the head of `connection` (its target already matched
    the path): 200 when `ready`, else 503 and the connection ends. True when answered;
    False, with nothing done, for a request that is not a health check (another method,
    a body, a head to refuse), which then goes to the application."""
    head = connection.head
    if (
        head is None
        or head.method not in ("GET", "HEAD")
        or connection.wire_body
        or connection.refused is not None
    ):
        return False
    keep_alive = ready and head.keep_alive and not connection.state.stopping
    response, keep_alive = health_response(head, ready, keep_alive)
    if error_log.isEnabledFor(logging.DEBUG):
        error_log.debug(
            "%s: %s %s: health %s",
            connection.peer_text(),
            head.method,
            head.target,
            "ready" if ready else "stopping",
        )
    connection.answer_itself(response, keep_alive)
    return True


def health_response(head: RequestHead, ready: bool, keep_alive: bool) -> tuple[bytes, bool]:
    """The whole response to the health request `head`, and whether the connection may
    carry another request after it (never once not `ready`)."""
    code, status, body = _READY if ready else _STOPPING
    headers, _, _, keep_alive = frame_response(
        head.version,
        head.method,
        code,
        list(_HEADERS),
        len(body),
        keep_alive and ready,
        current_date(),
    )
    data = encode_head(head.version, status, headers)
    if head.method != "HEAD":
        data += body
    return data, keep_alive
