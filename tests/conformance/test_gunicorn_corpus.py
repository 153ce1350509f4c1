"""Replays gunicorn's request corpus against a real corral over raw sockets.

The corpus lives outside the repository, in `../shared/conformance/gunicorn-requests`;
without it these tests are skipped, or fail under CORRAL_REQUIRE_ALL=1 (see
tests/requirements.py). Its README says how a `.http` file becomes wire bytes and which
files depend on gunicorn's settings. Every file is sent twice per concurrency model: in
one write, and in pieces of 1 to 7 bytes so that the server sees each head split at many
places.

A valid file must get a 2xx for every request the connection carries; an invalid one an
error status, then a closed connection, and never a response to a second request. Where
corral's answer differs from the corpus's verdict, `EXPECTED_DIFFERENTLY` names the file,
the status corral gives and why.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.conformance.corpus_files import CORPUS, wire_bytes
from tests.requirements import require
from tests.server import MODELS, RunningServer

APP = "tests.conformance.corpus_app:app"
# The corpus's own README counts the files it holds; fewer means a damaged copy.
CORPUS_SIZE = {"valid": 63, "invalid": 74}

# RFC 9112 section 3.2: an HTTP/1.1 request without Host gets 400 from corral, while many
# corpus files omit it (gunicorn does not require one). Such heads get this line after
# their request line, so that the files still test what they were written for.
HOST_LINE = b"Host: x\r\n"

# Where corral's verdict differs from the corpus folder the file sits in: status, reason.
EXPECTED_DIFFERENTLY: dict[str, tuple[int, str]] = {
    "valid/009.http": (
        400,
        "Transfer-Encoding together with Content-Length: RFC 9112 section 6.3 lets a "
        "server refuse the pair, and corral does because it is how requests are smuggled",
    ),
    "valid/012.http": (
        400,
        "Content-Type in the trailer section: corral refuses trailer fields that describe "
        "the content (RFC 9110 section 6.5.1); gunicorn takes them",
    ),
    "valid/024.http": (431, "an 8204-byte field line is over the 8190-byte default"),
    "valid/025.http": (501, "gzip under chunked: corral decodes no coding but chunked"),
    "valid/025_line.http": (501, "gzip under chunked: corral decodes no coding but chunked"),
    "valid/026.http": (431, "an 8204-byte field line is over the 8190-byte default"),
    "valid/028.http": (
        400,
        "whitespace between field name and colon: RFC 9112 section 5.1 says MUST answer "
        "400 (gunicorn accepts it only with strip_header_spaces)",
    ),
    "valid/029.http": (501, "identity under chunked: identity is no longer a transfer coding"),
    "valid/030.http": (501, "identity under chunked: identity is no longer a transfer coding"),
    "valid/compat_obs_fold.http": (
        400,
        "obs-fold: RFC 9112 section 5.2 lets a server reject it with 400, which corral "
        "does (gunicorn accepts it only with permit_obsolete_folding)",
    ),
    "valid/compat_obs_fold_huge.http": (400, "obs-fold, as valid/compat_obs_fold.http"),
    "valid/pp_01.http": (400, "a PROXY protocol line, read only with --proxy-protocol"),
    "valid/pp_02.http": (400, "a PROXY protocol line, read only with --proxy-protocol"),
    "valid/pp_04.http": (400, "a PROXY protocol v2 header, read only with --proxy-protocol"),
    "valid/pp_05.http": (400, "a PROXY protocol v2 header, read only with --proxy-protocol"),
    "valid/rfc9112_smuggle_gzip_chunked_01.http": (
        501,
        "gzip under chunked: RFC 9112 section 6.1 answers an unimplemented coding with 501",
    ),
    "valid/rfc9112_smuggle_te_identity_chunked_01.http": (
        501,
        "identity under chunked: RFC 9112 section 6.1 answers an unknown coding with 501",
    ),
    "invalid/003c.http": (
        200,
        "`-bl` is a token, all that RFC 9110 section 9.1 asks of a method; gunicorn "
        "refuses lowercase methods by a rule of its own",
    ),
    "invalid/006.http": (200, "a 4112-byte request line is under corral's 8190-byte default"),
    "invalid/008.http": (
        200,
        "the longest field line, 8189 bytes, is within the 8190-byte limit as corral counts "
        "it, without its CRLF; gunicorn counts the CRLF",
    ),
    "invalid/010.http": (200, "invalid only with a 10-byte field size limit"),
    "invalid/011.http": (200, "invalid only with a limit of 2 header fields"),
    "invalid/012.http": (200, "invalid only with a 98-byte field size limit"),
    "invalid/017.http": (
        200,
        "the 8189-byte field line is within the 8190-byte limit as corral counts it, "
        "without its CRLF; gunicorn counts the CRLF",
    ),
    "invalid/019.http": (
        200,
        "conflicting X-Forwarded-Proto and X-Forwarded-Ssl from a trusted peer: corral "
        "ignores scheme headers that disagree instead of refusing the request",
    ),
    "invalid/040.http": (
        200,
        "the same bytes as valid/040.http: Transfer_Encoding and Content_Length are "
        "dropped for their underscores, leaving a valid request",
    ),
    "invalid/chunked_07.http": (
        200,
        "Transfer_Encoding is dropped for its underscore, leaving a valid chunked request",
    ),
    "invalid/limit_header_default_01.http": (
        200,
        "the 8190-byte field line equals the limit as corral counts it, without its CRLF; "
        "gunicorn counts the CRLF",
    ),
}

# Invalid files refused with a status other than 400.
REFUSED_WITH: dict[str, int] = {
    "invalid/007.http": 431,  # an 8203-byte field line
    "invalid/009.http": 431,  # 104 header fields
    "invalid/018.http": 505,  # HTTP/111
    "invalid/version_02.http": 505,  # HTTP/2.0
}

# Files holding more than one request whose connection ends before the last one.
RESPONSE_COUNTS: dict[str, tuple[int, str]] = {
    "valid/018.http": (2, "two HTTP/1.1 requests"),
    "valid/019.http": (1, "HTTP/1.0 without keep-alive: the connection ends after one"),
    "valid/020.http": (1, "the second request line is the first request's 24-byte body"),
    "valid/021.http": (1, "Connection: close on the first request"),
    "valid/022.http": (2, "HTTP/1.0 with Connection: Keep-Alive, then HTTP/1.1"),
    "valid/023.http": (2, "a chunked request, then a GET"),
}

# Files that never finish a request: nothing is answered while the client waits, and the
# connection ends once the client half-closes.
INCOMPLETE: dict[str, str] = {
    "invalid/001.http": "the head never ends",
    "invalid/rfc9112_chunked_missing_final_crlf_01.http": "the last chunk is never ended",
}

# valid/099.http declares a Content-Length of 17914 but the file holds 8599 body bytes;
# filler bytes complete it, or the server would rightly wait for the rest.
TRUNCATED = frozenset({"valid/099.http"})

# Bodies the app must have read, to show the framing was undone as written.
BODIES: dict[str, bytes] = {
    "valid/001.http": b'{"nom": "nom"}',
    "valid/008.http": b"HELLO",
    "valid/010.http": b"all your base are belong to us",
    "valid/011.http": b"hello world",
    "valid/013.http": b"hello world",
    "valid/020.http": b"GET /second HTTP/1.1\r\n\r\n",
    "valid/023.http": b"hello world",
    "valid/040.http": b"tricked",
    "valid/rfc9112_chunked_ext_quoted_01.http": b"hello",
    "valid/rfc9112_chunked_size_leading_zeros_01.http": b"hello",
    "valid/rfc9112_chunked_size_uppercase_hex_01.http": b"0123456789",
    "invalid/chunked_07.http": b"hello world",
}

# Files carrying underscore names that must not reach the environ as their hyphen twins.
UNDERSCORE_FILES: dict[str, dict[str, str | None]] = {
    "valid/040.http": {"HTTP_TRANSFER_ENCODING": None, "CONTENT_LENGTH": "7"},
    "valid/040_compat.http": {"HTTP_TRANSFER_ENCODING": None, "CONTENT_LENGTH": "7"},
    "invalid/040.http": {"HTTP_TRANSFER_ENCODING": None, "CONTENT_LENGTH": "7"},
    "invalid/chunked_07.http": {"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": None},
}

# Files whose corpus verdict holds under other limits, replayed against a server started
# with them. gunicorn counts the CRLF in a field line's size and corral does not, so its
# field size limits appear here 2 bytes smaller.
SETTINGS_DEPENDENT: dict[str, tuple[list[str], int]] = {
    "valid/024.http": (["--limit-request-line", "8200", "--limit-request-field-size", "8210"], 200),
    "valid/026.http": (["--limit-request-line", "8200", "--limit-request-field-size", "8210"], 200),
    "invalid/006.http": (["--limit-request-line", "4094"], 414),
    "invalid/008.http": (["--limit-request-field-size", "8188"], 431),
    "invalid/010.http": (["--limit-request-field-size", "8"], 431),
    "invalid/011.http": (["--limit-request-fields", "2"], 431),
    "invalid/012.http": (["--limit-request-field-size", "96"], 431),
    "invalid/017.http": (["--limit-request-field-size", "8188"], 431),
    "invalid/limit_header_default_01.http": (["--limit-request-field-size", "8188"], 431),
}

SOCKET_TIMEOUT = 5.0
QUIET_PERIOD = 0.3
MODES = ("one-write", "pieces")


def list_corpus() -> list[str]:
    if not CORPUS.is_dir():
        return []
    return sorted(f"{path.parent.name}/{path.name}" for path in CORPUS.glob("*valid/*.http"))


def require_corpus() -> None:
    require(
        CORPUS.is_dir(),
        f"the gunicorn request corpus is missing: expected it at {CORPUS} "
        "(the shared folder beside the repository)",
    )


def add_host(data: bytes, every_request: bool) -> bytes:
    """Insert HOST_LINE into HTTP/1.1 heads without a Host field.

    With `every_request`, the requests of a well-formed stream are walked one by one,
    skipping each body; otherwise only the first head is touched, since what follows a
    malformed request is not a request.
    """
    result = bytearray()
    position = 0
    while position < len(data):
        head_end = data.find(b"\r\n\r\n", position)
        if head_end < 0:
            break
        lines = data[position:head_end].split(b"\r\n")
        if lines[0].endswith(b" HTTP/1.1") and not any(
            line.lower().startswith(b"host:") for line in lines[1:]
        ):
            insert_at = position + len(lines[0]) + 2
            result += data[position:insert_at] + HOST_LINE
            position = insert_at
        if not every_request:
            break
        body_end = find_body_end(data, head_end + 4, lines[1:])
        result += data[position:body_end]
        position = body_end
    result += data[position:]
    return bytes(result)


def find_body_end(data: bytes, start: int, field_lines: list[bytes]) -> int:
    """Where the body starting at `start` ends, for the well-formed valid files only."""
    fields = {}
    for line in field_lines:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    if b"chunked" in fields.get(b"transfer-encoding", b""):
        position = start
        while True:
            line_end = data.index(b"\r\n", position)
            size = int(data[position:line_end].split(b";")[0], 16)
            position = line_end + 2
            if size == 0:
                while not data.startswith(b"\r\n", position):  # trailer fields
                    position = data.index(b"\r\n", position) + 2
                return position + 2
            position += size + 2
    return start + int(fields.get(b"content-length", b"0"))


def complete_truncated_body(data: bytes) -> bytes:
    declared = re.search(rb"\r\nContent-Length: ([0-9]+)\r\n", data)
    assert declared is not None
    body = data[data.index(b"\r\n\r\n") + 4 :]
    return data + b"-" * (int(declared[1]) - len(body))


def request_bytes(name: str) -> bytes:
    require_corpus()
    data = wire_bytes((CORPUS / name).read_bytes())
    data = add_host(data, every_request=name.startswith("valid/"))
    if name in TRUNCATED:
        data = complete_truncated_body(data)
    return data


@dataclass
class Response:
    status: int
    fields: dict[str, str]
    body: bytes


class ResponseReader:
    """Reads HTTP/1.1 responses off a socket, framed by Content-Length or chunked."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _receive(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if not self._receive():
                raise EOFError(f"connection closed inside a response: {bytes(self.buffer)!r}")
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._receive():
                raise EOFError("connection closed inside a response body")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def response(self) -> Response:
        status_line = self._line()
        match = re.fullmatch(rb"HTTP/1\.[01] ([0-9]{3}) .*", status_line)
        assert match, f"not a status line: {status_line!r}"
        fields: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.lower()] = value.strip()
        status = int(match[1])
        if status in (204, 304):
            body = b""
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._exactly(size))
                assert self._line() == b""
            while self._line():  # trailer fields
                pass
            body = b"".join(parts)
        elif "content-length" in fields:
            body = self._exactly(int(fields["content-length"]))
        else:
            body = self.rest()
        return Response(status, fields, body)

    def rest(self) -> bytes:
        """Everything until the server closes; a timeout fails the test."""
        try:
            while self._receive():
                pass
        except ConnectionResetError:
            # A server that closes with unread bytes in its receive queue sends a reset.
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def send(sock: socket.socket, data: bytes, mode: str, seed: str, refused: bool) -> None:
    """Send `data` whole or in small pieces, stopping early if a `refused` one is answered.

    A request that is answered as it arrives is either refused (its answer is final) or
    one of several pipelined requests (the rest must still be sent).
    """
    try:
        if mode == "one-write":
            sock.sendall(data)
            return
        pieces = random.Random(seed)
        position = 0
        count = 0
        while position < len(data):
            size = pieces.randint(1, 7)
            sock.sendall(data[position : position + size])
            position += size
            count += 1
            if count <= 40:
                # Pauses make each early piece reach the server on its own; later pieces
                # may merge, which bounds the time a 16 KB file takes.
                time.sleep(0.001)
            if refused and select.select([sock], [], [], 0)[0]:
                return
    except (BrokenPipeError, ConnectionResetError):
        # The server answered and closed before the rest was sent: the answer is read next.
        return


@dataclass
class Replay:
    responses: list[Response]
    after: bytes


def replay(port: int, name: str, mode: str, expected: list[int]) -> Replay:
    """Send a file, read as many responses as `expected` names, then what follows them."""
    data = request_bytes(name)
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        send(sock, data, mode, seed=name, refused=expected[0] >= 300)
        reader = ResponseReader(sock)
        responses = []
        for _ in expected:
            responses.append(reader.response())
            if responses[-1].status >= 300:
                break
        if not responses or responses[-1].status < 300:
            # A server keeping the connection open must close it once the client is done.
            # It may have closed already (HTTP/1.0, Connection: close) and reset the
            # connection on bytes that came after the request it served.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        return Replay(responses, reader.rest())


def expected_statuses(name: str) -> list[int]:
    if name in EXPECTED_DIFFERENTLY:
        status = EXPECTED_DIFFERENTLY[name][0]
    elif name.startswith("valid/"):
        status = 200
    else:
        status = REFUSED_WITH.get(name, 400)
    count = RESPONSE_COUNTS.get(name, (1, ""))[0] if status < 300 else 1
    return [status] * count


def check_replay(name: str, result: Replay, expected: list[int]) -> None:
    statuses = [response.status for response in result.responses]
    assert statuses == expected, f"{name}: answered {statuses}, expected {expected}"
    assert result.after == b"", f"{name}: more than the expected answers: {result.after!r}"
    last = result.responses[-1]
    if last.status >= 300:
        assert last.fields.get("connection", "").lower() == "close", last.fields
        return
    first = result.responses[0]
    if "x-request" in first.fields:
        # The answer to CONNECT: its head only, and the connection ends with it.
        assert "content-length" not in first.fields and "transfer-encoding" not in first.fields
        assert first.body == b""
        seen = json.loads(first.fields["x-request"])
    else:
        seen = json.loads(first.body)
    if name in BODIES:
        assert seen["body"].encode("latin-1") == BODIES[name]
    for key, value in UNDERSCORE_FILES.get(name, {}).items():
        assert seen.get(key) == value, f"{name}: environ[{key!r}] = {seen.get(key)!r}"


@pytest.fixture(scope="module", params=list(MODELS), ids=list(MODELS))
def corpus_server(request: pytest.FixtureRequest) -> Iterator[Callable[[], RunningServer]]:
    """One server per concurrency model for the whole module, started by the first test
    that asks for it: without the corpus, none is."""
    started: list[RunningServer] = []

    def server() -> RunningServer:
        if not started:
            started.append(RunningServer(app=APP, options=MODELS[request.param]))
        return started[0]

    yield server
    for running in started:
        running.stop()


def test_corpus_is_present() -> None:
    require_corpus()
    for folder, size in CORPUS_SIZE.items():
        found = len(list((CORPUS / folder).glob("*.http")))
        assert found == size, f"{CORPUS / folder} holds {found} files, the corpus has {size}"


def test_every_listed_file_exists() -> None:
    """A renamed or removed corpus file must not leave a stale expectation behind."""
    require_corpus()
    listed = (
        set(EXPECTED_DIFFERENTLY)
        | set(REFUSED_WITH)
        | set(RESPONSE_COUNTS)
        | set(INCOMPLETE)
        | TRUNCATED
        | set(BODIES)
        | set(UNDERSCORE_FILES)
        | set(SETTINGS_DEPENDENT)
    )
    missing = sorted(name for name in listed if not (CORPUS / name).is_file())
    assert not missing, f"expectations name files the corpus lacks: {missing}"


def test_host_is_added_only_where_missing() -> None:
    assert add_host(b"GET / HTTP/1.1\r\n\r\n", every_request=True) == (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with_host = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"
    assert add_host(with_host, every_request=True) == with_host
    http10 = b"GET / HTTP/1.0\r\n\r\n"
    assert add_host(http10, every_request=True) == http10
    # The body of the first request looks like a request line and must stay untouched.
    body_like = b"GET /a HTTP/1.1\r\nContent-Length: 18\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
    assert add_host(body_like, every_request=True) == (
        b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list_corpus() or ["(corpus missing)"])
def test_corpus_file(corpus_server: Callable[[], RunningServer], name: str, mode: str) -> None:
    require_corpus()
    port = corpus_server().port
    if name in INCOMPLETE:
        check_incomplete(port, name, mode)
        return
    expected = expected_statuses(name)
    check_replay(name, replay(port, name, mode, expected), expected)


def check_incomplete(port: int, name: str, mode: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        send(sock, request_bytes(name), mode, seed=name, refused=False)
        readable = select.select([sock], [], [], QUIET_PERIOD)[0]
        assert not readable, f"{name}: answered before the request was complete"
        sock.shutdown(socket.SHUT_WR)
        after = ResponseReader(sock).rest()
    # Closing in silence and answering 400 both tell the client the request failed.
    assert after == b"" or re.match(rb"HTTP/1\.1 4[0-9][0-9] ", after), after


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(SETTINGS_DEPENDENT))
def test_file_under_its_settings(
    start_server: Callable[..., RunningServer], name: str, mode: str
) -> None:
    require_corpus()
    options, status = SETTINGS_DEPENDENT[name]
    server = start_server(app=APP, options=[*MODELS["thread-pool"], *options])
    expected = [status]
    check_replay(name, replay(server.port, name, mode, expected), expected)
