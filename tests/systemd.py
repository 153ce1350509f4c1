"""What systemd does for a service, done by a test: the notification socket of a
`Type=notify` unit (sd_notify(3)) and the listening sockets of socket activation
(sd_listen_fds(3))."""

from __future__ import annotations

import fcntl
import socket
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

_CREDENTIALS = struct.Struct("iII")


class NotifySocket:
    """The datagram socket systemd names in NOTIFY_SOCKET; `value` is that variable's
    value (an abstract "@name" when `abstract_name` is given). As systemd does (for
    NotifyAccess=main), it asks the kernel for each sender's pid: `sender`."""

    def __init__(self, path: Path | None = None, abstract_name: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sender = 0
        if abstract_name is not None:
            self.sock.bind("\0" + abstract_name)
            self.value = "@" + abstract_name
        else:
            assert path is not None
            self.sock.bind(str(path))
            self.value = str(path)

    def receive(self, timeout: float = 15.0) -> dict[str, str]:
        """The next message's NAME=value lines; raises TimeoutError when none comes."""
        self.sock.settimeout(timeout)
        return self._receive()

    def pending(self) -> list[dict[str, str]]:
        """The messages sent so far and not yet received, without waiting."""
        messages = []
        self.sock.setblocking(False)
        try:
            while True:
                messages.append(self._receive())
        except BlockingIOError:
            return messages

    def _receive(self) -> dict[str, str]:
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(_CREDENTIALS.size))
        self.sender = 0
        for level, kind, value in ancillary:
            if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                self.sender = _CREDENTIALS.unpack(value[: _CREDENTIALS.size])[0]
        return parse_message(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def parse_message(data: bytes) -> dict[str, str]:
    fields = {}
    for line in data.decode().split("\n"):
        name, sep, value = line.partition("=")
        assert sep, f"not NAME=value: {line!r} in {data!r}"
        fields[name] = value
    return fields


# Run with `python -c`: it moves the sockets handed over to 3, 4, ..., sets the
# variables, LISTEN_PID to its own pid, and execs the command, which keeps that pid.
_ACTIVATE = """
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3 + len(fds)) for fd in fds]
for fd in fds:
    os.close(fd)
for target, fd in enumerate(moved, start=3):
    os.dup2(fd, target)
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid())
if sys.argv[2]:
    os.environ["LISTEN_FDNAMES"] = sys.argv[2]
os.execvp(sys.argv[3], sys.argv[3:])
"""


def activated_command(fds: Sequence[int], argv: Sequence[str], names: str = "") -> list[str]:
    """`argv` run as systemd runs a socket-activated service: the sockets `fds` moved to
    3, 4, ..., LISTEN_FDS and LISTEN_FDNAMES (when `names` is given, colon-separated)
    set, and LISTEN_PID set to the pid that runs `argv`. Run it with `pass_fds=fds`."""
    return [sys.executable, "-c", _ACTIVATE, ",".join(map(str, fds)), names, *argv]


def high_fd(sock: socket.socket, minimum: int = 10) -> int:
    """A duplicate of `sock`'s descriptor numbered `minimum` or above, the caller's to
    close once the process it is handed to has started."""
    return fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, minimum)
