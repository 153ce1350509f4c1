"""What a listening socket tells the requests that come through it."""

from __future__ import annotations

import socket
from pathlib import Path

from corral.config import Timeouts, build_config
from corral.serving.listeners import ListenerInfo, listener_info


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
