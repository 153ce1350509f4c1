"""What systemd does for a service, done by a test: the notification socket of a
`Type=notify` unit (sd_notify(3)) and the listening sockets of socket activation
(sd_listen_fds(3))."""

from __future__ import annotations

import shlex
import socket
from collections.abc import Sequence
from pathlib import Path


class NotifySocket:
    """The datagram socket systemd names in NOTIFY_SOCKET; `value` is that variable's
    value (an abstract "@name" when `abstract_name` is given)."""

    def __init__(self, path: Path | None = None, abstract_name: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
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
        return parse_message(self.sock.recv(4096))

    def pending(self) -> list[dict[str, str]]:
        """The messages sent so far and not yet received, without waiting."""
        messages = []
        self.sock.setblocking(False)
        try:
            while True:
                messages.append(parse_message(self.sock.recv(4096)))
        except BlockingIOError:
            return messages

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


def activated_command(fds: Sequence[int], argv: Sequence[str], names: str = "") -> list[str]:
    """`argv` run as systemd runs a socket-activated service: the sockets `fds` moved to
    3, 4, ... and LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set, the last to the pid of
    the process that runs `argv` (a shell that execs keeps its pid). Run it with
    `pass_fds=fds`."""
    moves = []
    for target, fd in enumerate(fds, start=3):
        assert fd >= 3 + len(fds), f"fd {fd} would be overwritten by the ones moved to 3..."
        moves.append(f"exec {target}<&{fd} {fd}<&-")
    assignments = f"LISTEN_FDS={len(fds)} LISTEN_PID=$$"
    if names:
        assignments += f" LISTEN_FDNAMES={shlex.quote(names)}"
    script = "; ".join([*moves, f'{assignments} exec "$@"'])
    return ["sh", "-c", script, "sh", *argv]


def high_fd(sock: socket.socket, minimum: int = 10) -> int:
    """A duplicate of `sock`'s descriptor numbered `minimum` or above, so that moving it
    to fd 3 cannot overwrite another socket handed over."""
    import fcntl

    return fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, minimum)
