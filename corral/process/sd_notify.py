"""systemd's service notification protocol (sd_notify(3)), for a `Type=notify` unit.

systemd names a datagram socket in NOTIFY_SOCKET (a path, or an abstract name written
with a leading "@"); the service sends it newline-separated `NAME=value` lines. corral
sends, from the process systemd started (the master, or the single process):

- `READY=1` with `MAINPID=` and a `STATUS=` giving the concurrency, once the sockets
  listen and every worker has booted;
- `RELOADING=1` with `MONOTONIC_USEC=` (which systemd 253 and later ask for) when HUP
  starts a reload, and `READY=1` again once it is done, or given up;
- `STOPPING=1` when a graceful or quick stop begins.

Like NOTIFY_SOCKET in gunicorn and libsystemd's `sd_notify(0, ...)`, the variable is read
and left in the environment. A message that cannot be sent is logged once at debug level
and never stops the server: a server outside systemd serves the same.
"""

from __future__ import annotations

import logging
import os
import socket
import time

error_log = logging.getLogger("corral.error")

NOTIFY_SOCKET_VARIABLE = "NOTIFY_SOCKET"


def notify_address(value: str) -> str | None:
    """The socket address for a NOTIFY_SOCKET value: a path as it is, "@name" as the
    abstract name "\\0name"; None for what no AF_UNIX socket can reach (empty, relative,
    or systemd 254's "vsock:" addresses, which corral does not speak)."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


class ServiceNotifier:
    """Sends this process's state to systemd; does nothing without NOTIFY_SOCKET."""

    def __init__(self, value: str | None) -> None:
        """`value` is NOTIFY_SOCKET's; None or empty when there is none."""
        self.value = value or ""
        self.address = notify_address(self.value) if value else None
        self.failure_logged = False
        self.stopping_sent = False
        self.serving_status = ""
        if value and self.address is None:
            self._log_failure(f"NOTIFY_SOCKET={value!r} is not a unix socket address")

    @classmethod
    def from_environment(cls) -> ServiceNotifier:
        """The notifier for the NOTIFY_SOCKET this process was started with: a
        process-start protocol like LISTEN_FDS, not a setting, so read here, once."""
        return cls(os.environ.get(NOTIFY_SOCKET_VARIABLE))

    def ready(self, status: str) -> None:
        """Serving: `status` is the concurrency line, shown by `systemctl status`."""
        self.serving_status = status
        self.send("READY=1", f"MAINPID={os.getpid()}", f"STATUS={status}")

    def ready_again(self) -> None:
        """Serving again after a reload, with the status `ready` last gave."""
        self.ready(self.serving_status)

    def reloading(self) -> None:
        """A reload started; systemd 253+ wants the CLOCK_MONOTONIC time it began."""
        microseconds = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={microseconds}", "STATUS=Reloading")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self, status: str = "Stopping") -> None:
        """A stop began; sent once, however many stop signals follow."""
        if self.stopping_sent:
            return
        self.stopping_sent = True
        self.send("STOPPING=1", f"STATUS={status}")

    def send(self, *lines: str) -> bool:
        """One datagram of `lines`; False when there is no socket or it failed."""
        if self.address is None:
            return False
        message = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never wait: a stalled reader must not stall the master's loop.
                sock.setblocking(False)
                sock.sendto(message, self.address)
        except OSError as error:
            self._log_failure(f"cannot notify systemd at {self.value}: {error}")
            return False
        return True

    def _log_failure(self, message: str) -> None:
        if not self.failure_logged:
            self.failure_logged = True
            error_log.debug("%s", message)
