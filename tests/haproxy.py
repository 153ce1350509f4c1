"""A real HAProxy for tests, started on a configuration file with its listening socket
handed over already bound (`bind fd@N`), so that clients can connect at once and the
port is never let go and taken again."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tests.requirements import require
from tests.server import stop_process

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
TIMEOUT = 10.0


def require_haproxy() -> None:
    require(os.access(HAPROXY, os.X_OK), "HAProxy is not installed (apt-get install haproxy)")


@contextlib.contextmanager
def running_haproxy(
    config: Path, listener: socket.socket, output: IO[str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """HAProxy on `config`, which binds `fd@N` for `listener`; checked with -c first.
    In the foreground, HAProxy writes its warnings (a server going DOWN or UP) to
    `output`, discarded when None."""
    require_haproxy()
    command = [HAPROXY, "-f", str(config)]
    checked = subprocess.run(
        [*command, "-c"],
        pass_fds=(listener.fileno(),),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    process = subprocess.Popen(
        [*command, "-db"],
        pass_fds=(listener.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=output if output is not None else subprocess.DEVNULL,
        text=True,
    )
    try:
        yield process
    finally:
        stop_process(process, signal.SIGTERM, TIMEOUT)
