"""Reading a corral's stats: the address `--stats` was given, one GET of the JSON at `/`,
and the checked shape of version 1 of that document (docs/observability.md).

Keys this reader does not know are ignored (the document may gain keys without a new
version); a missing or mistyped key it needs, or another version, is `NotCorralStats`.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

# The version of the document's shape this reader understands.
DOCUMENT_VERSION = 1
# A document of 64 requests in flight per process for hundreds of processes stays far
# below this; past it the peer is not corral's stats listener.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


class StatsFailure(Exception):
    """The stats could not be read; the message is one line."""


class StatsUnreachable(StatsFailure):
    """No answer: the connection was refused or timed out, or the name does not resolve."""


class NotCorralStats(StatsFailure):
    """Something answered, but not with version 1 of corral's stats document."""


class BadAddress(ValueError):
    """ADDRESS is not HOST:PORT, [IPv6]:PORT, a port or an http:// URL of one."""


@dataclass(frozen=True)
class StatsAddress:
    """Where a corral's stats listener is."""

    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def parse_address(text: str) -> StatsAddress:
    """The stats listener at `text`: what `--stats` was given (HOST:PORT, [IPv6]:PORT, or a
    port alone, which means 127.0.0.1 as it does there), or the `http://HOST:PORT/` URL the
    server logs. Raises `BadAddress` with a one-line reason."""
    rest = text.strip()
    if rest.startswith("http://"):
        rest = rest[len("http://") :].rstrip("/")
    elif "://" in rest:
        raise BadAddress(f"{text!r}: the stats are served over http://")
    if rest.isdigit():
        host, port_text = "127.0.0.1", rest
    elif rest.startswith("["):
        host, _, port_text = rest[1:].partition("]:")
    else:
        host, _, port_text = rest.rpartition(":")
    if not host or "/" in host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadAddress(f"{text!r}: give HOST:PORT, [IPv6]:PORT or a port")
    return StatsAddress(host, int(port_text))


@dataclass(frozen=True)
class WorkerStats:
    """One worker process (or the single process). Seconds and bytes as in the JSON;
    quantiles are None before its first request."""

    pid: int
    state: str
    slots: int
    in_app: int
    waiting: int
    served: int
    p50_seconds: float | None
    p99_seconds: float | None
    rss_bytes: int
    restarts: int


@dataclass(frozen=True)
class RequestInFlight:
    """A request inside the app: its worker's pid, the thread (or greenlet) name, the
    method, the path without its query string, and seconds since the app was called."""

    worker: int
    thread: str
    method: str
    path: str
    age_seconds: float


@dataclass(frozen=True)
class Sizing:
    """The server's sizing advice: its sentence, and whether the setting in use is more
    than twice off it."""

    text: str
    far_off: bool


@dataclass(frozen=True)
class Stats:
    """One reading of the stats. `slots` is how many requests the server serves at once,
    `in_app` how many it serves now, `waiting` how many wait for a thread; `in_flight` is
    oldest first and may list fewer than `in_app` (64 a process at most)."""

    pid: int
    uptime_seconds: float
    worker_processes: int
    slots: int
    model: str
    requests: int
    by_status_class: dict[str, int]
    in_app: int
    waiting: int
    connections: int
    restarts: int
    workers: tuple[WorkerStats, ...]
    in_flight: tuple[RequestInFlight, ...]
    sizing: Sizing | None


def fetch_stats(address: StatsAddress, timeout: float = 5.0) -> Stats:
    """GET the stats at `address`, waiting at most `timeout` seconds for each of
    connecting and reading. Raises `StatsUnreachable` or `NotCorralStats`."""
    connection = http.client.HTTPConnection(address.host, address.port, timeout=timeout)
    try:
        try:
            connection.request("GET", "/", headers={"Accept": "application/json"})
            response = connection.getresponse()
            body = response.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as error:
            # First: a connection closed before the answer (a server stopping) is both an
            # OSError and an HTTPException.
            raise StatsUnreachable(f"cannot reach {address.url}: {_reason(error)}") from None
        except http.client.HTTPException as error:
            raise NotCorralStats(
                f"{address.url} does not answer as an HTTP server: {type(error).__name__}"
            ) from None
    finally:
        connection.close()
    if response.status != 200:
        raise NotCorralStats(
            f"{address.url} answered {response.status} {response.reason}, not corral's stats"
        )
    if len(body) > MAX_DOCUMENT_BYTES:
        raise NotCorralStats(f"{address.url} answered more than corral's stats ever hold")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise NotCorralStats(f"{address.url} answered something other than JSON") from None
    try:
        return read_document(document)
    except NotCorralStats as error:
        raise NotCorralStats(f"{address.url} is not corral's stats: {error}") from None


def _reason(error: OSError) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return error.strerror or str(error) or type(error).__name__


def read_document(document: Any) -> Stats:
    """`Stats` from the parsed JSON. Raises `NotCorralStats` naming the first key that is
    missing or of the wrong type, or the version when it is not 1."""
    top = _Object(document, "the document")
    version = top.get("version", int)
    if version != DOCUMENT_VERSION:
        raise NotCorralStats(
            f"version {version} of the document; this corral top reads version {DOCUMENT_VERSION}"
        )
    concurrency = top.object("concurrency")
    totals = top.object("totals")
    by_class = totals.object("by_status_class")
    sizing = top.optional_object("sizing")
    return Stats(
        pid=top.get("pid", int),
        uptime_seconds=top.number("uptime_seconds"),
        worker_processes=concurrency.get("workers", int),
        slots=concurrency.get("slots", int),
        model=concurrency.get("model", str),
        requests=totals.get("requests", int),
        by_status_class={name: by_class.get(name, int) for name in by_class.value},
        in_app=totals.get("in_app", int),
        waiting=totals.get("waiting", int),
        connections=totals.get("connections", int),
        restarts=totals.get("restarts", int),
        workers=tuple(_worker(entry) for entry in top.objects("workers")),
        in_flight=tuple(_request(entry) for entry in top.objects("in_flight")),
        sizing=None
        if sizing is None
        else Sizing(sizing.get("text", str), bool(sizing.value.get("far_off", False))),
    )


def _worker(entry: _Object) -> WorkerStats:
    return WorkerStats(
        pid=entry.get("pid", int),
        state=entry.get("state", str),
        slots=entry.get("slots", int),
        in_app=entry.get("in_app", int),
        waiting=entry.get("waiting", int),
        served=entry.get("served", int),
        p50_seconds=entry.optional_number("p50_seconds"),
        p99_seconds=entry.optional_number("p99_seconds"),
        rss_bytes=entry.get("rss_bytes", int),
        restarts=entry.get("restarts", int),
    )


def _request(entry: _Object) -> RequestInFlight:
    return RequestInFlight(
        worker=entry.get("worker", int),
        thread=entry.get("thread", str),
        method=entry.get("method", str),
        path=entry.get("path", str),
        age_seconds=entry.number("age_seconds"),
    )


class _Object:
    """A JSON object and where it is in the document, for one-line complaints."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise NotCorralStats(f"{where} is not an object")
        self.value: dict[str, Any] = value
        self.where = where

    def _name(self, key: str) -> str:
        return key if self.where == "the document" else f"{self.where}.{key}"

    def _item(self, key: str) -> Any:
        if key not in self.value:
            raise NotCorralStats(f"no {self._name(key)}")
        return self.value[key]

    def get(self, key: str, kind: type[int] | type[str]) -> Any:
        value = self._item(key)
        # JSON's true and false are ints to Python.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise NotCorralStats(f"{self._name(key)} is not {'text' if kind is str else 'a count'}")
        return value

    def number(self, key: str) -> float:
        value = self._item(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise NotCorralStats(f"{self._name(key)} is not a number")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self.value.get(key) is None else self.number(key)

    def object(self, key: str) -> _Object:
        return _Object(self._item(key), self._name(key))

    def optional_object(self, key: str) -> _Object | None:
        return None if self.value.get(key) is None else self.object(key)

    def objects(self, key: str) -> list[_Object]:
        value = self._item(key)
        if not isinstance(value, list):
            raise NotCorralStats(f"{self._name(key)} is not a list")
        return [
            _Object(entry, f"{self._name(key)}[{number}]") for number, entry in enumerate(value)
        ]
