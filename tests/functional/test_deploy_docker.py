"""docs/deploy/docker/Dockerfile's CMD serves, and stops as Docker and Kubernetes stop it:
its exact command line (the listening addresses moved to loopback ports the kernel
picks) is run from this checkout, its HEALTHCHECK program succeeds against it, and
after TERM the same program fails on a 503 while the app is still served, until the
drain delay ends and corral exits 0. The image itself is not built here: that needs a
Docker daemon and the base image from its registry."""

from __future__ import annotations

import fnmatch
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deployment_files import (
    DOCKERFILE,
    ROOT,
    Dockerfile,
    corral_config,
    host_and_port,
    read_dockerfile,
)
from tests.server import RunningServer, fetch, wait_until

# Options whose address becomes a loopback port picked by the kernel.
_LISTENING_OPTIONS = ("--bind", "--stats")


def local_command(argv: list[str]) -> list[str]:
    """The image's CMD as it runs here: corral from this checkout, listening on loopback
    ports picked by the kernel; every other argument as it is."""
    local = [sys.executable, "-m", "corral", *argv[1:]]
    for option in _LISTENING_OPTIONS:
        if option in local:
            assert local.count(option) == 1
            local[local.index(option) + 1] = "127.0.0.1:0"
    return local


def local_health_check(dockerfile: Dockerfile, port: int) -> list[str]:
    """The HEALTHCHECK's argv as it runs here: this Python, the port corral bound."""
    python, flag, program = dockerfile.healthcheck
    assert (python, flag) == ("python", "-c")
    _, bound = host_and_port(corral_config(dockerfile.cmd).bind[0])
    image_address = f"127.0.0.1:{bound}/"
    assert program.count(image_address) == 1
    return [sys.executable, flag, program.replace(image_address, f"127.0.0.1:{port}/")]


def run_check(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@pytest.mark.timeout(120)
def test_the_image_command_serves_then_drains_on_term() -> None:
    dockerfile = read_dockerfile()
    config = corral_config(dockerfile.cmd)
    server = RunningServer(command=local_command(dockerfile.cmd), start_timeout=30)
    try:
        check = local_health_check(dockerfile, server.port)
        # Workers may still be booting when the master logs its address.
        assert wait_until(lambda: run_check(check).returncode == 0, timeout=20), server.log[-4000:]
        assert fetch(server.port, "/")[0] == 200

        server.process.send_signal(signal.SIGTERM)
        assert wait_until(
            lambda: fetch(server.port, str(config.health_path))[0] == 503,
            timeout=config.drain_delay,
        ), server.log[-4000:]
        failed = run_check(check)
        assert failed.returncode != 0
        assert "503" in failed.stderr
        # The listener still serves the app: the balancer has yet to stop sending.
        assert fetch(server.port, "/")[0] == 200
        assert server.process.wait(config.drain_delay + config.graceful_timeout + 15) == 0
    finally:
        server.stop()


DOCKERIGNORE = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore")


def _ignored(path: str, rules: list[str]) -> bool:
    """Whether Docker leaves `path` (relative to the context) out of the build context:
    the last rule that matches it, or one of the directories it is in, decides, and a
    rule starting with `!` lets it through (Docker's .dockerignore)."""
    parents = ["/".join(path.split("/")[:depth]) for depth in range(1, path.count("/") + 2)]
    ignored = False
    for rule in rules:
        pattern = rule.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatchcase(name, pattern) for name in parents):
            ignored = not rule.startswith("!")
    return ignored


def test_the_dockerignore_sends_what_the_build_copies_and_corral_builds_from_it(
    tmp_path: Path,
) -> None:
    # The build context is the repository's root; a file the Dockerfile copies that the
    # .dockerignore leaves out fails the build, and anything else sent only slows it.
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    sent = [path for path in listed if not _ignored(path, rules)]
    copied = {
        source
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for source in line.split()[1:-1]
    }
    assert copied, "the Dockerfile copies nothing from the context"
    assert {path.split("/")[0] for path in sent} == copied
    # Built from what is sent alone, as the image's `pip install` does.
    context = tmp_path / "context"
    for path in sent:
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / path, context / path)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("corral-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "corral/__main__.py" in archive.namelist()
