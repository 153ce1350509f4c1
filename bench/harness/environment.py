"""What the report says about the machine and the software measured."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from harness.ceilings import find_nginx

PACKAGES = (
    "corral", "flask", "werkzeug", "gunicorn", "gevent", "waitress", "granian",
    "cheroot", "pyuwsgi", "bjoern", "matplotlib",
)  # fmt: skip


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_output(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    # wrk and nginx print their version on stderr, wrk with a non-zero exit code.
    return (completed.stdout + completed.stderr).strip()


def tool_versions() -> dict[str, str]:
    wrk_line = _command_output(["wrk", "-v"]).splitlines()
    nginx = find_nginx()
    nginx_line = _command_output([nginx, "-v"]) if nginx else ""
    return {
        "wrk": wrk_line[0].split(" Copyright")[0] if wrk_line else "not installed",
        "nginx": nginx_line.replace("nginx version: ", "") or "not installed",
    }


def corral_revision(repo_dir: Path) -> str:
    revision = _command_output(["git", "-C", str(repo_dir), "rev-parse", "--short", "HEAD"])
    if not revision or " " in revision:
        return "no commit"
    return revision


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def describe_machine() -> str:
    return (
        f"{cpu_model()}, {os.cpu_count()} CPUs, {memory_gib():.0f} GiB, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )
