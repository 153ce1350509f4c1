"""What a listening socket tells the requests that come through it."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from corral.config import Timeouts, build_config
from corral.serving.listeners import ListenerInfo, listen, listener_info, stop_new_connections


def test_a_tcp_listener_names_its_address_and_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert listener_info(sock) == ListenerInfo("127.0.0.1", str(port), "http")


def test_a_unix_listener_is_localhost_without_a_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "s"))
        assert listener_info(sock) == ListenerInfo("localhost", "", "http")


def test_the_timeouts_come_from_their_settings() -> None:
    config = build_config(
        None, {"keep_alive": "2", "client_timeout": "7", "graceful_timeout": "11"}
    )
    assert config.timeouts == Timeouts(keep_alive=2.0, client=7.0, graceful=11.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux socket filter")
def test_a_listener_stopping_new_connections_drops_them_and_keeps_those_queued() -> None:
    listener = listen("127.0.0.1:0", 16)
    port = listener.getsockname()[1]
    try:
        queued = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert stop_new_connections(listener)
        # Its SYN dropped: no answer, not even a refusal, while the listener is open.
        with pytest.raises(TimeoutError):
            socket.create_connection(("127.0.0.1", port), timeout=0.3)
        accepted, _ = listener.accept()
        accepted.sendall(b"still served")
        assert queued.recv(100) == b"still served"
        accepted.close()
        queued.close()
    finally:
        listener.close()


def test_a_listener_it_did_not_bind_is_left_alone() -> None:
    # Inherited (systemd, USR2, fd://): another program serves on with it.
    inherited = socket.create_server(("127.0.0.1", 0))
    try:
        assert not stop_new_connections(inherited)
        socket.create_connection(inherited.getsockname(), timeout=5).close()
    finally:
        inherited.close()
