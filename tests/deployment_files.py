"""The deployment files of docs/deploy, read for the tests that check them: the
Dockerfile's instructions (with dockerfile-parse), the Kubernetes manifests (YAML), the
command line each gives corral (with corral's own parser), and the Prometheus metric
names corral exports (from its own exposition)."""

from __future__ import annotations

import io
import ipaddress
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser

from corral.cli import parse_config
from corral.config import Config
from corral.process.slot_table import Counts, TableSnapshot
from corral.process.stats_report import metrics_exposition
from corral.serving.request_counts import DURATION_BOUNDS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "docs" / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"


@dataclass(frozen=True)
class Dockerfile:
    """The instructions of a Dockerfile's last stage (the image that runs), in order:
    (instruction, value) with instructions upper-cased and continuation lines joined."""

    base: str
    instructions: tuple[tuple[str, str], ...]
    # Every stage's RUN lines: the packages are installed in a build stage.
    runs: tuple[str, ...]

    def last(self, instruction: str) -> str | None:
        """The value of the last `instruction`, the one in effect; None without one."""
        values = [value for name, value in self.instructions if name == instruction]
        return values[-1] if values else None

    @property
    def cmd(self) -> list[str]:
        """CMD's argv. Raises ValueError unless CMD is in exec form (a JSON array), as a
        shell form runs /bin/sh as PID 1, which passes no TERM on to corral."""
        return exec_form(self.last("CMD"), "CMD")

    @property
    def healthcheck_options(self) -> dict[str, str]:
        """HEALTHCHECK's --name=value options."""
        options, _ = _split_healthcheck(self.last("HEALTHCHECK"))
        return dict(option.removeprefix("--").split("=", 1) for option in shlex.split(options))

    @property
    def healthcheck(self) -> list[str]:
        """The argv of HEALTHCHECK's CMD, which must be in exec form too (no shell)."""
        _, command = _split_healthcheck(self.last("HEALTHCHECK"))
        return exec_form(command, "HEALTHCHECK CMD")

    @property
    def exposed_ports(self) -> set[int]:
        return {
            int(port.split("/")[0])
            for name, value in self.instructions
            if name == "EXPOSE"
            for port in value.split()
        }


def exec_form(value: str | None, what: str) -> list[str]:
    if value is None:
        raise ValueError(f"no {what}")
    try:
        argv = json.loads(value)
    except json.JSONDecodeError:
        raise ValueError(f"{what} is in shell form: {value!r}") from None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"{what} is not a JSON array of strings: {value!r}")
    return argv


def _split_healthcheck(value: str | None) -> tuple[str, str]:
    if value is None:
        raise ValueError("no HEALTHCHECK")
    options, separator, command = value.partition("CMD ")
    if not separator:
        raise ValueError(f"HEALTHCHECK has no CMD: {value!r}")
    return options, command


def read_dockerfile(text: str | None = None) -> Dockerfile:
    """docs/deploy/docker/Dockerfile, or a Dockerfile's `text`."""
    if text is None:
        text = DOCKERFILE.read_text()
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    structure = [
        (entry["instruction"].upper(), entry["value"])
        for entry in parser.structure
        if entry["instruction"].upper() != "COMMENT"
    ]
    stages = [number for number, (name, _) in enumerate(structure) if name == "FROM"]
    if not stages:
        raise ValueError("no FROM")
    last_stage = structure[stages[-1] :]
    return Dockerfile(
        base=last_stage[0][1],
        instructions=tuple(last_stage[1:]),
        runs=tuple(value for name, value in structure if name == "RUN"),
    )


def read_manifests(directory: Path = KUBERNETES) -> list[tuple[str, dict[str, Any]]]:
    """Every YAML document in `directory`, as (file name, document), by file name."""
    documents = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append((path.name, document))
    return documents


def corral_config(argv: list[str]) -> Config:
    """The settings `argv` (starting with the `corral` command) gives, parsed by corral's
    own parser with no environment. Raises ConfigError as `corral` would exit with."""
    if argv[:1] != ["corral"]:
        raise ValueError(f"the command is not corral: {argv[:1]}")
    return parse_config(argv[1:], environ={})[1]


def host_and_port(address: str) -> tuple[str, int]:
    """("0.0.0.0", 8000) from "0.0.0.0:8000" ([IPv6]:PORT too)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def reachable_from_outside(host: str) -> bool:
    """Whether a listener on `host` takes connections to the pod's or container's
    address, as kubelet's probes and Prometheus make them: not loopback."""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host not in ("localhost",)


def exported_metric_names() -> set[str]:
    """The names of the series corral's /metrics exports (`corral_requests_total`,
    `corral_request_duration_seconds_bucket`, ...), from its own exposition of an empty
    table."""
    from prometheus_client.parser import text_string_to_metric_families

    empty = Counts(0, {}, 0, 0, 0.0, (0,) * (len(DURATION_BOUNDS) + 1))
    snapshot = TableSnapshot(
        pid=1,
        started=0.0,
        workers=1,
        slots_per_worker=1,
        restarts=0,
        model="",
        retired=empty,
        slots=(),
    )
    body, _ = metrics_exposition(snapshot)
    names: set[str] = set()
    for family in text_string_to_metric_families(body.decode()):
        # A gauge's samples carry its name; with no workers, corral_worker_memory_bytes
        # has none. Other families' names (a counter's without _total) are no series.
        if family.type == "gauge":
            names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names
