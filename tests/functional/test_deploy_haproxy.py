"""docs/deploy/haproxy/haproxy.cfg in front of two corral instances: the client's address
reaches the application through the PROXY protocol, and one instance stopped (TERM) and
started again while clients send requests without pause costs them no request.

The configuration is the documented file itself, with only its addresses replaced: the
frontend's by a socket the test holds, the servers' by the instances' loopback ports."""

from __future__ import annotations

import json
import random
import re
import shlex
import signal
import socket
import sys
from pathlib import Path

from tests.haproxy import require_haproxy, running_haproxy
from tests.load import Load
from tests.server import RunningServer, wait_until

CONFIG = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "haproxy" / "haproxy.cfg"
APP = "tests.apps.behaviours:app"
# The client's loopback address, which only the PROXY header can tell corral: HAProxy
# itself connects from 127.0.0.1.
CLIENT = "127.0.0.3"


def documented_instance_options() -> list[str]:
    """The options of the corral command the configuration's opening comment gives,
    without its address and application; HAProxy's address is 127.0.0.1 here."""
    comment = next(
        line.lstrip("# ")
        for line in CONFIG.read_text().splitlines()
        if line.lstrip("# ").startswith("corral ")
    )
    argv = shlex.split(comment)[1:-1]
    bind = argv.index("-b")
    del argv[bind : bind + 2]
    allowed = argv.index("--proxy-allow-from") + 1
    argv[allowed] = "127.0.0.1"
    return argv


def unused_port_outside_the_ephemeral_range() -> int:
    """A port no connect() is given while an instance is stopped, so that the instance
    started again can bind it: below the kernel's ip_local_port_range."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        port = random.randrange(10000, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port found below the ephemeral range")


def start_instance(port: int) -> RunningServer:
    command = [sys.executable, "-m", "corral", "-b", f"127.0.0.1:{port}"]
    command += [*documented_instance_options(), APP]
    return RunningServer(command=command)


def haproxy_config(listener: socket.socket, ports: list[int]) -> str:
    """The documented configuration, listening on `listener`, its servers at `ports`."""
    text = CONFIG.read_text()
    text, binds = re.subn(r"(?m)^(\s*bind)\s+\S+$", rf"\1 fd@{listener.fileno()}", text)
    assert binds == 1, "expected one bind line"
    servers = iter(ports)
    text, count = re.subn(
        r"(?m)^(\s*server\s+\S+)\s+\S+",
        lambda match: f"{match.group(1)} 127.0.0.1:{next(servers)}",
        text,
    )
    assert count == len(ports), f"expected {len(ports)} server lines"
    return text


def test_an_instance_stopped_and_started_again_under_load_fails_no_request(
    tmp_path: Path,
) -> None:
    require_haproxy()
    options = documented_instance_options()
    # The health check is corral's own, which says 503 while the drain delay serves on.
    assert {"--health-path", "--drain-delay", "--proxy-protocol"} <= set(options), options
    # Worker processes, whose master closes its copies of the listener at TERM.
    assert "-w" in options, options
    ports = [unused_port_outside_the_ephemeral_range() for _ in range(2)]
    first = start_instance(ports[0])
    second = start_instance(ports[1])
    haproxy_log = tmp_path / "haproxy.log"
    try:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener,
            haproxy_log.open("w") as output,
        ):
            listener.bind(("127.0.0.1", 0))
            listener.listen(1024)
            config = tmp_path / "haproxy.cfg"
            config.write_text(haproxy_config(listener, ports))
            with running_haproxy(config, listener, output):
                load = Load(listener.getsockname()[1], "/", {"X-Show-Environ": "1"}, CLIENT)
                load.start()
                try:
                    assert wait_until(lambda: served(load, ports[0]) >= 100, 15), load.failures
                    assert wait_until(lambda: served(load, ports[1]) >= 100, 15), load.failures
                    first.process.send_signal(signal.SIGTERM)
                    down = "Server corral/corral1 is DOWN"
                    assert wait_until(lambda: down in haproxy_log.read_text(), 15)
                    # Taken out by corral's own 503 while it served on, not by a
                    # refused connection once it had stopped.
                    assert "code: 503" in line_of(haproxy_log, down)
                    assert first.process.wait(30) == 0, first.log
                    first.stop()
                    before = served(load, ports[0])
                    first = start_instance(ports[0])
                    up = "Server corral/corral1 is UP"
                    assert wait_until(lambda: up in haproxy_log.read_text(), 15)
                    assert wait_until(lambda: served(load, ports[0]) >= before + 100, 15)
                    load.stop()
                finally:
                    load.stop()
    finally:
        first.stop()
        second.stop()
    assert load.failures == []
    assert load.retries == []
    environs = [json.loads(body) for body in load.bodies()]
    assert {environ["REMOTE_ADDR"] for environ in environs} == {CLIENT}


def line_of(log: Path, text: str) -> str:
    return next(line for line in log.read_text().splitlines() if text in line)


def served(load: Load, port: int) -> int:
    """How many of `load`'s requests the instance on `port` answered."""
    mark = f'"SERVER_PORT": "{port}"'.encode()
    return sum(1 for body in load.bodies() if mark in body)
