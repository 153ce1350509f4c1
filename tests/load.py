"""Clients that send requests without pause, for tests of what a restart or a stop costs
them: every request is either answered or counted as a failure."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Mapping


class Load:
    """`clients` threads sending GET `path` until stopped: half on a new connection each
    time, half keeping theirs alive, from the address `source`. A refused or failed
    connection, a request with no answer and any status but 200 are failures. A
    keep-alive connection closed before the answer to a request sent on it began (a
    request HTTP lets a client retry, RFC 9112 section 9.3.1) is counted apart, as a
    retry; the client's next request goes on a new connection."""

    def __init__(
        self,
        port: int,
        path: str = "/",
        headers: Mapping[str, str] | None = None,
        source: str = "127.0.0.1",
        clients: int = 8,
        timeout: float = 20.0,
    ) -> None:
        self.port = port
        self.path = path
        self.headers = dict(headers or {})
        self.source = source
        self.timeout = timeout
        # (monotonic time the request was sent, the body answered)
        self.answers: list[tuple[float, bytes]] = []
        self.failures: list[str] = []
        self.retries: list[str] = []
        self.sent_at: dict[int, float] = {}
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._client, args=(number, number % 2 == 0), daemon=True)
            for number in range(clients)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Let each client finish its request; called again, does nothing more."""
        self.stopping.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(self.timeout + 5)
        assert not any(thread.is_alive() for thread in self.threads)

    def waiting(self) -> int:
        """How many clients wait for an answer."""
        return len(self.sent_at)

    def bodies(self) -> list[bytes]:
        return [body for _, body in list(self.answers)]

    def _client(self, number: int, keep_alive: bool) -> None:
        connection: http.client.HTTPConnection | None = None
        while not self.stopping.is_set():
            reused = connection is not None
            if connection is None:
                connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout, source_address=(self.source, 0)
                )
            sent = time.monotonic()
            self.sent_at[number] = sent
            try:
                connection.request("GET", self.path, headers=self.headers)
                response = connection.getresponse()
                body = response.read()
            except (ConnectionResetError, BrokenPipeError) as error:
                # RemoteDisconnected is a ConnectionResetError: closed with no answer.
                (self.retries if reused else self.failures).append(f"{number}: {error!r}")
                connection.close()
                connection = None
                continue
            except OSError as error:
                self.failures.append(f"{number}: {error!r}")
                connection.close()
                connection = None
                continue
            finally:
                self.sent_at.pop(number, None)
            if response.status != 200:
                self.failures.append(f"{number}: status {response.status}: {body[:200]!r}")
            else:
                self.answers.append((sent, body))
            if not keep_alive or response.will_close:
                connection.close()
                connection = None
        if connection is not None:
            connection.close()
