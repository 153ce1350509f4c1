"""docs/deploy/docker/Dockerfile says what corral understands: its CMD parses with
corral's own command line, its HEALTHCHECK asks the health path on the port CMD binds,
with nothing the slim image lacks, and it stops and runs as a container must. Each
check is shown to catch a broken copy. tests/functional/test_deploy_docker.py runs
the CMD."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import metadata

import pytest

from corral.config import ConfigError
from tests.deployment_files import (
    DOCKERFILE,
    ROOT,
    Dockerfile,
    corral_config,
    host_and_port,
    reachable_from_outside,
    read_dockerfile,
)

BASE_IMAGE = "python:3.11-slim"
# `pip install "/src[demo,metrics]"`: the extras installed from the checkout.
_PIP_INSTALL = re.compile(r"pip install [\"']?\S*?\[([\w,-]+)\][\"']?")
_URL = re.compile(r"https?://[^'\"\s]+")


def health_url(dockerfile: Dockerfile) -> str:
    """The URL the HEALTHCHECK's `python -c` program opens."""
    argv = dockerfile.healthcheck
    urls = _URL.findall(argv[-1])
    if len(urls) != 1:
        raise ValueError(f"the health check names {len(urls)} URLs: {argv!r}")
    return str(urls[0])


def dockerfile_faults(dockerfile: Dockerfile) -> list[str]:
    """What is wrong with `dockerfile` for serving corral in a container; [] for nothing."""
    faults: list[str] = []
    if not dockerfile.base.startswith(BASE_IMAGE):
        faults.append(f"the image is built on {dockerfile.base}, not {BASE_IMAGE}")
    user = (dockerfile.last("USER") or "root").split(":")[0]
    # Kubernetes' runAsNonRoot checks a numeric user only: a name cannot be told apart
    # from root without the image's /etc/passwd.
    if not user.isdigit() or int(user) == 0:
        faults.append(f"USER {user} is not a numeric user other than root")
    if dockerfile.last("STOPSIGNAL") != "SIGTERM":
        faults.append(f"STOPSIGNAL is {dockerfile.last('STOPSIGNAL')}, not SIGTERM")
    try:
        argv = dockerfile.cmd
        config = corral_config(argv)
    except (ValueError, ConfigError) as error:
        return [*faults, f"CMD: {error}"]
    if len(config.bind) != 1:
        return [*faults, f"CMD binds {config.bind}, not one address"]
    host, port = host_and_port(config.bind[0])
    if not reachable_from_outside(host):
        faults.append(f"CMD binds {config.bind[0]}, which a published port cannot reach")
    if port not in dockerfile.exposed_ports:
        faults.append(f"the port {port} CMD binds is not in EXPOSE")
    if config.stats is not None and host_and_port(config.stats)[1] not in dockerfile.exposed_ports:
        faults.append(f"the --stats port of {config.stats} is not in EXPOSE")
    if not config.health_path:
        faults.append("CMD gives no --health-path")
    if not config.drain_delay > 0:
        faults.append("CMD gives no --drain-delay")
    faults.extend(_healthcheck_faults(dockerfile, f"http://127.0.0.1:{port}{config.health_path}"))
    faults.extend(_install_faults(dockerfile, argv[-1], config.stats is not None))
    return faults


def _healthcheck_faults(dockerfile: Dockerfile, expected_url: str) -> list[str]:
    try:
        argv = dockerfile.healthcheck
        url = health_url(dockerfile)
    except ValueError as error:
        return [f"HEALTHCHECK: {error}"]
    faults = []
    # The slim image has no curl or wget: Python, and its standard library alone.
    if argv[:2] != ["python", "-c"] or len(argv) != 3:
        faults.append(f"HEALTHCHECK runs {argv!r}, not python -c PROGRAM")
    else:
        imported = {
            name.split(".")[0]
            for node in ast.walk(ast.parse(argv[2]))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for name in (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
        }
        outside = imported - set(sys.stdlib_module_names)
        if outside:
            faults.append(f"HEALTHCHECK imports {sorted(outside)}, not in the image")
    if url != expected_url:
        faults.append(f"HEALTHCHECK asks {url}, not {expected_url}")
    return faults


def _install_faults(dockerfile: Dockerfile, app: str, stats: bool) -> list[str]:
    installs = [match for run in dockerfile.runs for match in _PIP_INSTALL.findall(run)]
    if len(installs) != 1:
        return [f"{len(installs)} RUN lines pip install corral from the checkout, not one"]
    extras = set(installs[0].split(","))
    known = set(metadata("corral").get_all("Provides-Extra") or [])
    needed = {"metrics"} if stats else set()
    if app.startswith("corral.demo:"):
        needed.add("demo")
    faults = []
    if extras - known:
        faults.append(f"pip installs extras corral has not: {sorted(extras - known)}")
    if extras != needed:
        faults.append(f"pip installs the extras {sorted(extras)}; the image needs {sorted(needed)}")
    return faults


def test_the_dockerfile_serves_corral_as_a_container_should() -> None:
    assert dockerfile_faults(read_dockerfile()) == []


def test_the_dockerfile_cmd_is_corral_with_the_health_path_and_drain_delay() -> None:
    dockerfile = read_dockerfile()
    config = corral_config(dockerfile.cmd)
    assert config.health_path == "/healthz"
    assert health_url(dockerfile).endswith(config.health_path)
    # docker stop's default 10 s is shorter than the drain: the doc says to give more.
    docs = (ROOT / "docs" / "deploy" / "docker.md").read_text()
    stop_seconds = int(re.search(r"docker stop -t (\d+)", docs).group(1))  # type: ignore[union-attr]
    assert stop_seconds > config.drain_delay + config.graceful_timeout


# (what is broken, the text replaced in the Dockerfile, its replacement, a word of the
# fault expected)
BROKEN = [
    ("root user", "USER 10001:10001", "USER root", "USER root"),
    ("user by name", "USER 10001:10001", "USER corral", "USER corral"),
    ("stop signal", "STOPSIGNAL SIGTERM", "STOPSIGNAL SIGINT", "STOPSIGNAL"),
    ("unknown option", '"--drain-delay"', '"--drain-delya"', "--drain-delya"),
    ("loopback bind", '"0.0.0.0:8000"', '"127.0.0.1:8000"', "published port"),
    ("port not exposed", "EXPOSE 8000 9100", "EXPOSE 8000", "--stats port"),
    ("health check port", "127.0.0.1:8000/healthz'", "127.0.0.1:8080/healthz'", "asks"),
    ("health check path", '"--health-path", "/healthz"', '"--health-path", "/ready"', "asks"),
    ("curl", '"python", "-c", ', '"curl", "-fsS", ', "not python -c"),
    ("no metrics extra", '"/src[demo,metrics]"', '"/src[demo]"', "extras"),
    ("test extra", '"/src[demo,metrics]"', '"/src[demo,metrics,test]"', "extras"),
    ("shell form", 'CMD ["corral", \\', "CMD corral \\", "shell form"),
    ("another base", "FROM python:3.11-slim\n", "FROM python:3.11\n", "built on"),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
def test_a_broken_dockerfile_is_caught(old: str, new: str, expected: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    faults = dockerfile_faults(read_dockerfile(text.replace(old, new)))
    assert any(expected in fault for fault in faults), faults
