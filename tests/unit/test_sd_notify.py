"""sd_notify(3): NOTIFY_SOCKET's value as an address, and what is sent to it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from corral.process.sd_notify import ServiceNotifier, notify_address


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@/org/freedesktop/systemd1/notify/123", "\0/org/freedesktop/systemd1/notify/123"),
        ("@", None),
        ("", None),
        ("relative/path", None),
        ("vsock:2:1234", None),
    ],
)
def test_notify_address(value: str, address: str | None) -> None:
    assert notify_address(value) == address


def test_without_a_socket_nothing_is_sent() -> None:
    for value in (None, "", "vsock:2:1234"):
        notifier = ServiceNotifier(value)
        assert notifier.send("READY=1") is False


def test_a_stop_is_told_once_and_a_send_never_waits(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(tmp_path / "notify"))
        systemd.setblocking(False)
        notifier = ServiceNotifier(str(tmp_path / "notify"))
        notifier.stopping("Stopping quickly")
        notifier.stopping("Stopping quickly")
        assert systemd.recv(4096) == b"STOPPING=1\nSTATUS=Stopping quickly"
        with pytest.raises(BlockingIOError):
            systemd.recv(4096)
        # A reader that never reads fills its queue: sending then fails at once.
        while notifier.send("STATUS=" + "x" * 1000):
            pass
        assert notifier.failure_logged
