"""`wsgi.input`: the request body as a file-like object that never reads past its end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final, Protocol

from corral.http.parser import BodyDecoder, take_front

_READ_SIZE: Final = 65536
# An unread request body up to this size is read and dropped to keep the connection;
# a larger one is cheaper to end by closing.
DISCARD_LIMIT: Final = 1 << 20


class BodySource(Protocol):
    """What the body reads from: the connection's receive buffer and a way to fill it."""

    buffer: bytearray

    def receive(self) -> None:
        """Block until more bytes arrive; raise `IncompleteBody` if the peer closed."""

    def receive_unframed(self, size: int) -> bytes:
        """Block for up to `size` bytes read past the buffer; `IncompleteBody` at EOF."""


class RequestBody:
    """The PEP 3333 input stream over one request's body.

    `before_first_read` runs once, just before the first byte is asked of the peer; the
    connection uses it to send `100 Continue` only when the application wants the body.
    """

    __slots__ = ("_before_first_read", "_decoded", "decoder", "source")

    def __init__(
        self,
        source: BodySource,
        decoder: BodyDecoder,
        before_first_read: Callable[[], None] | None,
    ) -> None:
        self.source = source
        self.decoder = decoder
        self._decoded = bytearray()
        self._before_first_read = before_first_read

    def _pull(self, size: int) -> bytes:
        """Up to `size` decoded bytes, waiting for the peer if none are buffered."""
        decoder = self.decoder
        source = self.source
        while True:
            if not source.buffer:
                # Inside a run of body bytes with nothing buffered: read them from the
                # socket directly, one copy instead of three through the buffer.
                unframed = decoder.unframed(size)
                if unframed:
                    self._ask_for_body()
                    data = source.receive_unframed(unframed)
                    decoder.take_unframed(len(data))
                    return data
            data = decoder.read(source.buffer, size)
            if data or decoder.done:
                return data
            self._ask_for_body()
            source.receive()

    def _ask_for_body(self) -> None:
        if self._before_first_read is not None:
            self._before_first_read()
            self._before_first_read = None

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [bytes(self._decoded)]
            self._decoded.clear()
            while not self.decoder.done:
                parts.append(self._pull(_READ_SIZE * 4))
            return b"".join(parts)
        if size == 0:
            return b""
        # Like a buffered file, read(n) gives n bytes unless the body ends first, even
        # across chunks: applications read fixed-size records and headers this way.
        decoded = self._decoded
        if not decoded:
            data = self._pull(size)
            if len(data) == size or self.decoder.done:
                return data
            decoded += data
        while len(decoded) < size and not self.decoder.done:
            decoded += self._pull(size - len(decoded))
        return take_front(decoded, size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        decoded = self._decoded
        scanned = 0
        while True:
            newline = decoded.find(b"\n", scanned)
            if newline >= 0:
                end = newline + 1
                break
            if 0 <= limit <= len(decoded):
                end = limit
                break
            scanned = len(decoded)
            data = self._pull(_READ_SIZE)
            if not data:
                end = len(decoded)
                break
            decoded += data
        if 0 <= limit < end:
            end = limit
        return take_front(decoded, end)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def cancel_continue(self) -> bool:
        """Drop `before_first_read` unless it has run; True if it had not.

        Called when the response head goes out: an interim response after the final one
        would be read as part of its body (RFC 9110 section 15.2).
        """
        pending = self._before_first_read is not None
        self._before_first_read = None
        return pending

    def too_long_to_discard(self) -> bool:
        """True when the unread rest is known to be over `DISCARD_LIMIT` bytes.

        Known for a Content-Length body; for a chunked one only within the current chunk.
        """
        return self.decoder.unframed(DISCARD_LIMIT + 1) > DISCARD_LIMIT

    def discard(self) -> bool:
        """Read and drop the rest of the body, up to `DISCARD_LIMIT` bytes; True if it all went."""
        self._decoded.clear()
        dropped = 0
        while not self.decoder.done:
            if dropped > DISCARD_LIMIT:
                return False
            dropped += len(self._pull(_READ_SIZE))
        return True
