"""PEP 3333's response side: start_response, and the app's output framed and sent.

`run_application` calls the app with an environ from `corral.wsgi.environ` and turns
what it returns into `corral.http.framing` bytes for an `Output`, the connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any, Final, Protocol, cast

from corral.http.framing import (
    CHUNKED,
    LAST_CHUNK,
    NO_BODY,
    InvalidResponse,
    check_response_headers,
    chunk_size_line,
    encode_head,
    frame_response,
    status_code,
)
from corral.http.parser import RequestHead
from corral.wsgi.environ import FileWrapper
from corral.wsgi.input import RequestBody

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# What a body piece may be (PEP 3333 says bytes; corral takes any bytes-like it can send).
# Compiled by mypyc, a parameter typed `bytes` would refuse the other two.
BodyBytes = bytes | bytearray | memoryview

# Joining a small body to the head saves a system call; past this size the copy costs more.
_JOIN_LIMIT: Final = 65536


class _FormattedDate:
    """The HTTP Date value last formatted, and the second (Unix time) it is for."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = 0
        self.text = ""


# One object changed in place, not a global rebound: compiled, a Final name is read
# directly, where any other module global is looked up in the module's dictionary.
_DATE: Final = _FormattedDate()


def current_date() -> str:
    """The HTTP Date value, formatted at most once a second."""
    date = _DATE
    now = int(time.time())
    if date.second != now:
        # The text first: a thread that sees the new second sees its text.
        date.text = formatdate(now, usegmt=True)
        date.second = now
    return date.text


class Output(Protocol):
    """Where the response goes: the connection's socket."""

    def send(self, data: BodyBytes) -> None: ...

    def send_last(self, data: BodyBytes) -> None:
        """Send the bytes that complete a response; they may wait only for the
        responses to requests already received on the same connection."""

    def sendfile(self, fd: int, offset: int, count: int) -> None: ...


class ServerState(Protocol):
    """What the server says of itself to each response: `stopping` turns true once it
    drains (TERM, --drain-delay, a worker retiring), read when the head goes out."""

    stopping: bool


class Response:
    """One response: start_response, write(), and what the app returns, sent as framed by
    `corral.http.framing.frame_response` when the head goes out.

    `keep_alive` stays true only while the response is framed so that the next request
    on the connection can be told apart from this one's body.
    """

    __slots__ = (
        "_headers",
        "_status",
        "body",
        "bytes_sent",
        "code",
        "framing",
        "head_length",
        "head_sent",
        "keep_alive",
        "output",
        "remaining",
        "request",
        "server",
    )

    def __init__(
        self,
        output: Output,
        request: RequestHead,
        body: RequestBody | None,
        server: ServerState,
    ) -> None:
        self.output = output
        self.request = request
        self.body = body
        self._status: str | None = None
        # The application's headers until the head is sent, then the headers sent.
        self._headers: list[tuple[str, str]] = []
        self.code = 0
        self.head_sent = False
        self.server = server
        self.keep_alive = request.keep_alive
        self.framing = NO_BODY
        # Body bytes still to send when the framing is LENGTH.
        self.remaining: int | None = None
        self.bytes_sent = 0
        # Bytes of the head, once sent.
        self.head_length = 0

    def status_text(self) -> str:
        """The status line's text, e.g. "200 OK"; what corral sent when the app failed."""
        if self._status is not None and status_code(self._status) == self.code:
            return self._status
        return str(self.code)

    def header_list(self) -> list[tuple[str, str]]:
        return list(self._headers)

    def start_response(
        self, status: object, headers: Iterable[Any], exc_info: Any = None
    ) -> Callable[[object], None]:
        # `status` and `headers` are typed as what an application may pass: the checks
        # below, not a compiled signature, refuse what cannot be sent.
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self._status is not None:
            raise AssertionError("start_response called twice without exc_info")
        code = status_code(status)
        if code < 200:
            # PEP 3333 has no interim responses: a 1xx sent as the response would leave
            # the client waiting for the final one (RFC 9110 section 15.2).
            raise InvalidResponse(f"a 1xx status ({status!r}) cannot be the final response")
        # Checked now, so that the error reaches the application while it runs (PEP 3333);
        # copied, so that what is sent is what was checked.
        self._headers = check_response_headers(headers)
        # A str: `status_code` refused anything else.
        self._status = cast(str, status)
        self.code = code
        return self.write

    def _head(self, body_length: int | None) -> bytes:
        """Frame and encode the head; `body_length` is known for a body in one piece."""
        status = self._status
        if status is None:
            raise InvalidResponse("the application returned without calling start_response")
        # Read now, not when the request began: a response whose head leaves once the
        # server drains says "Connection: close", so that a balancer reusing the
        # connection never meets it closed (RFC 9112 section 9.6).
        may_keep_alive = self.keep_alive and not self.server.stopping
        body = self.body
        # The client may still wait for 100 Continue and send the body late or never;
        # either way the bytes after this response cannot be known to be a request, so
        # the connection ends with it (RFC 9110 section 10.1.1). A body too long to
        # discard will not be read either; saying so spares the client a reset on its
        # next request.
        if body is not None and (body.cancel_continue() or body.too_long_to_discard()):
            may_keep_alive = False
        request = self.request
        headers, self.framing, self.remaining, self.keep_alive = frame_response(
            request.version,
            request.method,
            self.code,
            self._headers,
            body_length,
            may_keep_alive,
            current_date(),
        )
        self._headers = headers
        self.head_sent = True
        head = encode_head(request.version, status, headers)
        self.head_length = len(head)
        return head

    def write(self, data: object) -> None:
        """Send one piece of body, sending the head first if it has not gone yet."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidResponse(f"response body must be bytes, not {type(data).__name__}")
        self._send_body(b"" if self.head_sent else self._head(None), data)

    def send_whole(self, data: object) -> None:
        """Send a body given as one piece, framed with its length when none was declared."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidResponse(f"response body must be bytes, not {type(data).__name__}")
        self._send_body(b"" if self.head_sent else self._head(len(data)), data)

    def _send_body(self, head: bytes, data: BodyBytes) -> None:
        framing = self.framing
        if framing is NO_BODY or not data:
            if not head:
                return
            if framing is NO_BODY or self.remaining == 0:
                self.output.send_last(head)
            else:
                self.output.send(head)
            return
        remaining = self.remaining
        if remaining is not None:
            if len(data) > remaining:
                # More than the declared length: the excess would be read as the next
                # response, so cut it and close.
                data = data[:remaining]
                self.keep_alive = False
            self.remaining = remaining - len(data)
            self._send(head, data, last=not self.remaining)
        elif framing is CHUNKED:
            self._send(head + chunk_size_line(len(data)), data, b"\r\n")
        else:
            self._send(head, data)
        self.bytes_sent += len(data)

    def _send(
        self, prefix: bytes, data: BodyBytes, suffix: bytes = b"", last: bool = False
    ) -> None:
        if len(data) <= _JOIN_LIMIT:
            if last:
                self.output.send_last(prefix + data + suffix)
            else:
                self.output.send(prefix + data + suffix)
            return
        if prefix:
            self.output.send(prefix)
        self.output.send(data)
        if suffix:
            self.output.send(suffix)

    def send_file(self, span: tuple[int, int, int]) -> None:
        fd, offset, length = span
        head = b"" if self.head_sent else self._head(length)
        if head:
            self.output.send(head)
        framing = self.framing
        if framing is NO_BODY:
            return
        count = length if self.remaining is None else min(length, self.remaining)
        if framing is CHUNKED:
            self.output.send(chunk_size_line(count))
        self.output.sendfile(fd, offset, count)
        if framing is CHUNKED:
            self.output.send(b"\r\n")
        elif self.remaining is not None:
            self.remaining -= count
        self.bytes_sent += count

    def finish(self) -> None:
        """End the body; a body shorter than its declared length closes the connection."""
        if not self.head_sent:
            self.output.send_last(self._head(0))
            return
        if self.framing is CHUNKED:
            self.output.send_last(LAST_CHUNK)
        elif self.remaining:
            self.keep_alive = False


def run_application(app: WSGIApp, environ: dict[str, Any], response: Response) -> None:
    """Call the app and send what it returns; the iterable's close() is always called."""
    # Its items typed as what an application may give: `write` and `send_whole` check.
    result: Iterable[object] = app(environ, response.start_response)
    try:
        if isinstance(result, FileWrapper):
            span = result.file_span()
            if span is not None:
                response.send_file(span)
                response.finish()
                return
        if isinstance(result, (list, tuple)) and len(result) == 1:
            response.send_whole(result[0])
        else:
            write = response.write
            for data in result:
                write(data)
        response.finish()
    finally:
        # A plain list or tuple has no close(), and asking it costs an AttributeError
        # raised and caught (PEP 3333's own examples return lists); a subclass may have one.
        if type(result) is not list and type(result) is not tuple:
            close = getattr(result, "close", None)
            if close is not None:
                close()
