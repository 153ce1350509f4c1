"""`corral.run_simple` in a subprocess, as Werkzeug's `dev_server` fixture runs its own:
started on a port the kernel picks (or a unix socket), read back from the log, stopped
with Ctrl-C."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from tests.server import ROOT, stop_process, wait_until

_LISTENING = re.compile(r"Listening at (http://127\.0\.0\.1:(\d+)|unix:(\S+))")


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket; the Host field says "localhost"."""

    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class DevServer:
    """`python -m tests.apps.werkzeug_live APP HOSTNAME NAME=LITERAL...` and its output.

    Standard output and standard error are kept apart: Werkzeug's request lines go to
    standard error, and a test may count them.
    """

    def __init__(
        self,
        app: str = "environ",
        hostname: str = "127.0.0.1",
        cwd: Path = ROOT,
        start_timeout: float = 15.0,
        **keywords: object,
    ) -> None:
        command = [sys.executable, "-m", "tests.apps.werkzeug_live", app, hostname]
        command += [f"{name}={value!r}" for name, value in keywords.items()]
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.port = 0
        self.unix_path = ""
        self.ready = threading.Event()
        assert self.process.stdout is not None and self.process.stderr is not None
        self.readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr)),
        ]
        for reader in self.readers:
            reader.daemon = True
            reader.start()
        if not wait_until(
            lambda: self.ready.is_set() or self.process.poll() is not None, start_timeout
        ):
            self.stop(signal.SIGKILL)
            raise RuntimeError("run_simple did not start:\n" + self.log)
        if not self.ready.is_set():
            self.stop()
            raise RuntimeError("run_simple exited:\n" + self.log)

    def _read(self, stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            match = _LISTENING.search(line)
            if match and not self.ready.is_set():
                if match.group(2):
                    self.port = int(match.group(2))
                else:
                    self.unix_path = match.group(3)
                self.ready.set()

    @property
    def log(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self, timeout: float = 10, blocksize: int = 8192) -> http.client.HTTPConnection:
        """A new connection to the server, over TCP or its unix socket."""
        if self.unix_path:
            return UnixHTTPConnection(self.unix_path, timeout)
        return http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=timeout, blocksize=blocksize
        )

    def request(
        self,
        target: str = "/",
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request on a fresh connection: the response and its whole body."""
        connection = self.connect()
        try:
            connection.request(method, target, body, headers or {})
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()

    def wait_for_stderr(self, pattern: str, timeout: float = 10.0) -> list[str]:
        """The standard error lines matching `pattern`, once there is at least one."""

        def matching() -> list[str]:
            return [line for line in list(self.stderr) if re.search(pattern, line)]

        wait_until(lambda: bool(matching()), timeout)
        return matching()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        code = stop_process(self.process, sig, timeout)
        for reader in self.readers:
            reader.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code

    def __enter__(self) -> DevServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
